//! The ZeroMQ output's flags: `--zmq-bind`, `--zmq-connect`, `--zmq-pattern`, `--zmq-hwm`.

use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;

use super::{OutputEntry, OutputFlags, StreamSettings};
use crate::stream::zmq::{self, Pattern, ZmqConfig};

/// Most frames a ZeroMQ peer may queue: each is a whole frame of memory.
pub const MAX_ZMQ_HWM: u32 = 1024;

/// The ZeroMQ output's flags.
#[derive(Debug, Args)]
pub struct ZmqArgs {
    /// ZeroMQ: bind this endpoint (tcp://HOST:PORT, tcp://HOST:* for any free port, or
    /// ipc://PATH); repeatable. Each frame is a two-part message: the 56-byte glstream header,
    /// then the payload.
    #[arg(long = "zmq-bind", value_name = "ENDPOINT")]
    pub zmq_bind: Vec<String>,

    /// ZeroMQ: connect to this endpoint (tcp://HOST:PORT or ipc://PATH); repeatable. ZeroMQ
    /// reconnects on its own when the peer goes away.
    #[arg(long = "zmq-connect", value_name = "ENDPOINT")]
    pub zmq_connect: Vec<String>,

    /// ZeroMQ pattern: push (each frame to one peer; the renderer waits when all are full) or
    /// pub (every subscriber gets what it keeps up with; nothing is rendered without one).
    #[arg(long, value_enum, default_value_t = Pattern::Push)]
    pub zmq_pattern: Pattern,

    /// ZeroMQ high-water mark: frames queued per peer before push waits or pub drops.
    #[arg(long, default_value_t = 2)]
    pub zmq_hwm: u32,
}

impl OutputFlags for ZmqArgs {
    fn asked(&self) -> bool {
        !self.zmq_bind.is_empty() || !self.zmq_connect.is_empty()
    }

    fn configure(
        &self,
        stream: &StreamSettings<'_>,
        _default: bool,
        outputs: &mut Vec<OutputEntry>,
    ) -> Result<()> {
        if !self.asked() {
            return Ok(());
        }
        for endpoint in &self.zmq_bind {
            zmq::check_endpoint("--zmq-bind", endpoint)?;
        }
        for endpoint in &self.zmq_connect {
            zmq::check_endpoint("--zmq-connect", endpoint)?;
        }
        if !(1..=MAX_ZMQ_HWM).contains(&self.zmq_hwm) {
            bail!(
                "--zmq-hwm {}: must be between 1 and {MAX_ZMQ_HWM} frames",
                self.zmq_hwm
            );
        }
        outputs.push(Arc::new(ZmqConfig {
            pattern: self.zmq_pattern,
            bind: self.zmq_bind.clone(),
            connect: self.zmq_connect.clone(),
            hwm: self.zmq_hwm,
            compress: stream.compress,
        }));
        Ok(())
    }
}
