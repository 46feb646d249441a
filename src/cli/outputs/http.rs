//! The HTTP output's flags: `--http PORT` and the preview's settings (`--preview-fps`,
//! `--jpeg-quality`, `--http-allow-host`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;

use super::{OutputEntry, OutputFlags, StreamSettings};
use crate::cli::{positive, seconds};
use crate::stream::http::HttpConfig;

/// `--preview-fps` when none is given.
pub const DEFAULT_PREVIEW_FPS: f64 = 10.0;

/// `--jpeg-quality` when none is given.
pub const DEFAULT_JPEG_QUALITY: u8 = 80;

/// The HTTP output's flags.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Serve HTTP on this port (on --bind; 0 picks a free one): a live page at /, MJPEG at
    /// /stream.mjpg, the next frame at /frame.png, Prometheus metrics at /metrics and
    /// /healthz. Runs beside the other outputs, or alone.
    #[arg(long, value_name = "PORT")]
    pub http: Option<u16>,

    /// Frames per second each HTTP viewer gets at most (/stream.mjpg); with --http only
    /// [default: 10].
    #[arg(long)]
    pub preview_fps: Option<f64>,

    /// JPEG quality of /stream.mjpg, 1 to 100; with --http only [default: 80].
    #[arg(long)]
    pub jpeg_quality: Option<u8>,

    /// Also answer HTTP requests whose Host is NAME (repeatable). On a loopback --bind only
    /// localhost, 127.x.x.x, [::1] and the bound address are answered (421 otherwise: DNS
    /// rebinding); given any, the same list applies on every address.
    #[arg(long = "http-allow-host", value_name = "NAME")]
    pub http_allow_host: Vec<String>,
}

impl OutputFlags for HttpArgs {
    fn asked(&self) -> bool {
        self.http.is_some()
    }

    fn configure(
        &self,
        stream: &StreamSettings<'_>,
        _default: bool,
        outputs: &mut Vec<OutputEntry>,
    ) -> Result<()> {
        let Some(port) = self.http else {
            for (flag, given) in [
                ("--preview-fps", self.preview_fps.is_some()),
                ("--jpeg-quality", self.jpeg_quality.is_some()),
                ("--http-allow-host", !self.http_allow_host.is_empty()),
            ] {
                if given {
                    bail!("{flag} applies to the HTTP output only; add --http PORT or drop {flag}");
                }
            }
            return Ok(());
        };
        let preview_fps = self.preview_fps.unwrap_or(DEFAULT_PREVIEW_FPS);
        let mut allowed_hosts = Vec::new();
        for name in &self.http_allow_host {
            // As a Host header carries it, less the port (any port is answered).
            let bare = name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .unwrap_or(name);
            let hostname = !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !hostname && bare.parse::<IpAddr>().is_err() {
                bail!("--http-allow-host {name:?}: give a host name or an address, without a port");
            }
            allowed_hosts.push(bare.to_ascii_lowercase());
        }
        let preview_interval = seconds(
            "--preview-fps",
            1.0 / positive("--preview-fps", preview_fps)?,
            "a rate",
        )?;
        let jpeg_quality = self.jpeg_quality.unwrap_or(DEFAULT_JPEG_QUALITY);
        if !(1..=100).contains(&jpeg_quality) {
            bail!("--jpeg-quality {jpeg_quality}: must be between 1 and 100");
        }
        let render = stream.render;
        if render.width_px > u16::MAX.into() || render.height_px > u16::MAX.into() {
            bail!(
                "--http: a JPEG is at most 65535 pixels a side, the frames are {}x{}",
                render.width_px,
                render.height_px
            );
        }
        outputs.push(Arc::new(HttpConfig {
            addr: SocketAddr::new(stream.bind, port),
            preview_interval,
            jpeg_quality,
            frame_interval: stream.frame_interval,
            allowed_hosts,
        }));
        Ok(())
    }
}
