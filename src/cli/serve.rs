//! Options of the default action, serving the stream, and their validation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use super::{MAX_CLIENTS, RenderArgs, positive, seconds};
use crate::render::RenderOptions;
use crate::stream::hub::Policy;
use crate::stream::protocol::HeaderMode;
use crate::stream::server::Transport;

/// Options of the default action: render and stream.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Size, device, ring and scene.
    #[command(flatten)]
    pub render: RenderArgs,

    /// Address to listen on. The default is loopback only; use 0.0.0.0 to accept remote clients.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// TCP port to listen on; 0 picks a free one (the "listening on" line says which).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,

    /// Listen on a Unix domain socket at PATH instead of TCP (a stale socket file is replaced,
    /// a live one is not).
    #[arg(long, value_name = "PATH", group = "transport")]
    pub unix: Option<PathBuf>,

    /// Connect out to a consumer listening at HOST:PORT instead of listening (as a Blender game
    /// script would); reconnect with backoff when it goes away.
    #[arg(long, value_name = "HOST:PORT", group = "transport")]
    pub connect: Option<String>,

    /// Write the stream to standard output (logs stay on stderr); with --header raw it pipes
    /// straight into ffmpeg -f rawvideo.
    #[arg(long, group = "transport")]
    pub stdout: bool,

    /// Refuse connections beyond this many clients.
    #[arg(long, default_value_t = 32)]
    pub max_clients: usize,

    /// Header before each frame.
    #[arg(long, value_enum, default_value_t = HeaderMode::Blender)]
    pub header: HeaderMode,

    /// What a client that cannot keep up gets: skipped frames (latest), or a render loop that
    /// waits for it (lossless). Default: latest for sockets, lossless for --stdout, which is a
    /// recording.
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,

    /// Stop after rendering this many frames (the last ones are still sent).
    #[arg(long)]
    pub frames: Option<u64>,

    /// Render at most this many frames per second (default: as fast as possible).
    #[arg(long)]
    pub fps: Option<f64>,

    /// Drop a client whose socket accepts nothing for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub send_timeout: f64,
}

/// Validated serve configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The render pipeline.
    pub render: RenderOptions,
    /// Where the stream goes.
    pub transport: Transport,
    /// Connections beyond this many are refused.
    pub max_clients: usize,
    /// Wire header.
    pub header: HeaderMode,
    /// Slow-client policy.
    pub policy: Policy,
    /// Frame limit.
    pub frames: Option<u64>,
    /// Time between frames when paced.
    pub frame_interval: Option<Duration>,
    /// Per-client write timeout.
    pub send_timeout: Duration,
}

impl ServeArgs {
    /// Checks every option that can be checked without GL.
    pub fn validate(&self) -> Result<ServeConfig> {
        let mut render = self.render.validate()?;
        self.header
            .check_size(render.width_px, render.height_px, render.format)?;
        if self.frames == Some(0) {
            bail!("--frames 0: nothing to render; leave it out to stream until stopped");
        }
        if !(1..=MAX_CLIENTS).contains(&self.max_clients) {
            bail!(
                "--max-clients {}: must be between 1 and {MAX_CLIENTS}",
                self.max_clients
            );
        }
        let frame_interval = match self.fps {
            Some(fps) => Some(seconds("--fps", 1.0 / positive("--fps", fps)?, "a rate")?),
            None => None,
        };
        render.scene.frame_rate = self.fps;
        Ok(ServeConfig {
            render,
            transport: if let Some(path) = &self.unix {
                Transport::Unix(path.clone())
            } else if let Some(addr) = &self.connect {
                Transport::Connect(addr.clone())
            } else if self.stdout {
                Transport::Stdout
            } else {
                Transport::Tcp(SocketAddr::new(self.bind, self.port))
            },
            max_clients: self.max_clients,
            header: self.header,
            policy: self.policy.unwrap_or(if self.stdout {
                Policy::Lossless
            } else {
                Policy::Latest
            }),
            frames: self.frames,
            frame_interval,
            send_timeout: seconds(
                "--send-timeout",
                positive("--send-timeout", self.send_timeout)?,
                "a time",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("glstream").chain(args.iter().copied())).unwrap()
    }

    fn error(args: &[&str]) -> String {
        parse(args).serve.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_blender_setup_on_loopback() {
        let config = parse(&[]).serve.validate().unwrap();
        assert_eq!(
            (config.render.width_px, config.render.height_px),
            (800, 600)
        );
        assert_eq!(
            config.transport,
            Transport::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(config.max_clients, 32);
        assert_eq!(config.render.pbo_count, 2);
        assert_eq!(config.header, HeaderMode::Blender);
        assert_eq!(config.policy, Policy::Latest);
        assert!(config.frame_interval.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(error(&["--width", "0"]).starts_with("--width 0"));
        assert!(error(&["--height", "0"]).starts_with("--height 0"));
        assert!(error(&["--width", "70000"]).contains("65535"));
        assert!(error(&["--pbo-count", "0"]).starts_with("--pbo-count 0"));
        assert!(error(&["--pbo-count", "17"]).starts_with("--pbo-count 17"));
        assert!(error(&["--fps", "0"]).starts_with("--fps 0"));
        assert!(error(&["--fps", "NaN"]).starts_with("--fps NaN"));
        assert!(error(&["--frames", "0"]).starts_with("--frames 0"));
        assert!(error(&["--send-timeout=-1"]).starts_with("--send-timeout"));
        assert!(error(&["--send-timeout", "1e30"]).starts_with("--send-timeout"));
        assert!(error(&["--send-timeout", "1e-12"]).starts_with("--send-timeout"));
        assert!(error(&["--fps", "1e-300"]).starts_with("--fps"));
        assert!(error(&["--fps", "1e9"]).starts_with("--fps"));
        assert!(error(&["--max-clients", "0"]).starts_with("--max-clients 0"));
        assert!(error(&["--max-clients", "18446744073709551615"]).starts_with("--max-clients"));
    }

    #[test]
    fn transports_are_exclusive() {
        let config = parse(&["--unix", "/tmp/x.sock"]).serve.validate().unwrap();
        assert_eq!(config.transport, Transport::Unix("/tmp/x.sock".into()));
        let config = parse(&["--stdout"]).serve.validate().unwrap();
        assert_eq!(config.transport, Transport::Stdout);
        assert_eq!(
            config.policy,
            Policy::Lossless,
            "a recording keeps every frame"
        );
        assert!(Cli::try_parse_from(["glstream", "--stdout", "--connect", "127.0.0.1:1"]).is_err());
    }

    #[test]
    fn raw_header_allows_sizes_blender_cannot_describe() {
        assert!(
            parse(&["--width", "70000", "--header", "raw"])
                .serve
                .validate()
                .is_ok()
        );
    }
}
