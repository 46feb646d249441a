//! The socket outputs' flags: the TCP listener (`--port`, the default output), `--unix`,
//! `--connect`, `--stdout`, and what they share: the header before each frame and the TCP send
//! buffer.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::{OutputEntry, OutputFlags, StreamSettings};
use crate::stream::protocol::HeaderMode;
use crate::stream::socket::{SendBuffer, SocketConfig, Transport};

/// The TCP port when none is given.
pub const DEFAULT_PORT: u16 = 9000;

/// The socket outputs' flags.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// TCP port to listen on; 0 picks a free one (the "listening on" line says which). The
    /// TCP listener runs when --port is given or no other output is [default: 9000].
    #[arg(long)]
    pub port: Option<u16>,

    /// Also (or, without --port, only) listen on a Unix domain socket at PATH (a stale socket
    /// file is replaced, a live one is not).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,

    /// Connect out to a consumer listening at HOST:PORT (as a Blender game script would);
    /// reconnect with backoff when it goes away.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,

    /// Write the stream to standard output (logs stay on stderr); with --header raw it pipes
    /// straight into ffmpeg -f rawvideo. The stream ends when the reader does.
    #[arg(long)]
    pub stdout: bool,

    /// Header before each frame.
    #[arg(long, value_enum, default_value_t = HeaderMode::Blender)]
    pub header: HeaderMode,

    /// Send buffer of each TCP consumer's socket: auto (half of one core's L2 cache, which
    /// measured fastest for a consumer on the same machine), system (the kernel's autotuning), or
    /// a size in bytes (suffix K or M for KiB or MiB). Linux caps it at net.core.wmem_max.
    #[arg(long, default_value = "auto", value_parser = parse_send_buffer)]
    pub send_buffer: SendBuffer,
}

impl OutputFlags for SocketArgs {
    fn asked(&self) -> bool {
        self.port.is_some() || self.unix.is_some() || self.connect.is_some() || self.stdout
    }

    /// The TCP listener first, when --port is given or nothing else is asked for, so `--unix
    /// PATH` alone serves only the socket file; then Unix, --connect and stdout.
    fn configure(
        &self,
        stream: &StreamSettings<'_>,
        default: bool,
        outputs: &mut Vec<OutputEntry>,
    ) -> Result<()> {
        let mut transports = Vec::new();
        if self.port.is_some() || default {
            let port = self.port.unwrap_or(DEFAULT_PORT);
            transports.push(Transport::Tcp(SocketAddr::new(stream.bind, port)));
        }
        if let Some(path) = &self.unix {
            transports.push(Transport::Unix(path.clone()));
        }
        if let Some(addr) = &self.connect {
            check_connect_address(addr)?;
            transports.push(Transport::Connect(addr.clone()));
        }
        if self.stdout {
            transports.push(Transport::Stdout);
        }
        if transports.is_empty() {
            return Ok(());
        }
        let render = stream.render;
        self.header
            .check_size(render.width_px, render.height_px, render.format)?;
        if let Some(compress) = stream.compress
            && self.header != HeaderMode::Glstream
        {
            bail!(
                "--compress {compress}: the {} header cannot name a codec; use --header glstream \
                 (its version 2 carries the codec and the strips)",
                self.header.name()
            );
        }
        outputs.extend(transports.into_iter().map(|transport| -> OutputEntry {
            std::sync::Arc::new(SocketConfig {
                transport,
                header: self.header,
                send_buffer: self.send_buffer,
                compress: stream.compress,
            })
        }));
        Ok(())
    }
}

/// `--send-buffer`: auto, system, or bytes with an optional K or M (KiB, MiB) suffix, from 4 KiB
/// to 1 GiB (setsockopt takes a C int).
fn parse_send_buffer(text: &str) -> Result<SendBuffer, String> {
    const MIN: u64 = 4 << 10;
    const MAX: u64 = 1 << 30;
    match text {
        "auto" => return Ok(crate::cli::size::auto_send_buffer()),
        "system" => return Ok(SendBuffer::System),
        _ => {}
    }
    let bytes = crate::cli::size::parse_size(text).ok_or_else(|| {
        format!("expected auto, system or a size in bytes (like 524288 or 512K), got {text:?}")
    })?;
    if !(MIN..=MAX).contains(&bytes) {
        return Err(format!("{text} is out of range: 4K to 1024M"));
    }
    Ok(SendBuffer::Bytes(bytes as usize))
}

/// Checks that `addr` is HOST:PORT with a port from 1 to 65535. Whether the host resolves is
/// only known later (a consumer's name may not resolve yet), so that is retried, not refused.
fn check_connect_address(addr: &str) -> Result<()> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        bail!("--connect {addr}: expected HOST:PORT");
    };
    if host.is_empty() {
        bail!("--connect {addr}: the host is missing (expected HOST:PORT)");
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => bail!("--connect {addr}: '{port}' is not a port (1 to 65535)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_sizes_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_send_buffer("system"), Ok(SendBuffer::System));
        assert!(matches!(
            parse_send_buffer("auto"),
            Ok(SendBuffer::Loopback(_))
        ));
        assert_eq!(parse_send_buffer("524288"), Ok(SendBuffer::Bytes(524288)));
        assert_eq!(parse_send_buffer("512K"), Ok(SendBuffer::Bytes(524288)));
        assert_eq!(parse_send_buffer("2m"), Ok(SendBuffer::Bytes(2 << 20)));
        for bad in [
            "",
            "lots",
            "-1",
            "4095",
            "2048M",
            "1.5M",
            "+512K",
            "99999999999999999999K",
        ] {
            assert!(parse_send_buffer(bad).is_err(), "{bad:?}");
        }
    }
}
