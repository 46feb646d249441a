//! Each output's flags: one clap group per output (flattened into `serve`'s options, so the
//! command line is flat), what they mean, how they are checked and the configuration they build.
//! [`OutputArgs`] lists the groups in the order their outputs are bound; `serve` asks it for the
//! list of outputs and names no transport.
//!
//! Adding an output: its module in `src/stream/` (the configuration, the `OutputConfig` and
//! `Output` implementations), a file here with its flags and an [`OutputFlags`] implementation,
//! and one field in [`OutputArgs`] (which `each` lists).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::codec::Compress;
use crate::gl::readback::FrameLease;
use crate::render::RenderOptions;
use crate::stream::output::OutputConfig;

mod http;
mod shm;
mod socket;
mod zmq;

pub use socket::SocketArgs;
pub use zmq::MAX_ZMQ_HWM;

/// One output of a stream as configured, whatever it is: the render loop binds and starts it
/// for frames of any context's lifetime.
pub type OutputEntry = Arc<dyn for<'ctx> OutputConfig<FrameLease<'ctx>>>;

/// What every output's flags are checked against: the settings of the whole stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings<'a> {
    /// The frames' size and format.
    pub render: &'a RenderOptions,
    /// The address listeners bind (`--bind`): the TCP listener's and the HTTP server's.
    pub bind: IpAddr,
    /// The render loop's pace (`--fps`), if any.
    pub frame_interval: Option<Duration>,
    /// `--compress`: the outputs that can say what they carry compress with it.
    pub compress: Option<Compress>,
}

/// One output's flags (a clap group flattened into `serve`'s options): whether they ask for the
/// output, and the checked configurations they build.
pub trait OutputFlags {
    /// Whether these flags ask for an output. When no group does, the output that has a default
    /// (the TCP listener on port 9000) serves alone.
    fn asked(&self) -> bool;

    /// Checks the flags against `stream` and pushes the outputs they configure (none, one or
    /// several) onto `outputs`; `default` says no group asked for an output. Flags that only
    /// refine an output nobody asked for are refused: they would do nothing.
    fn configure(
        &self,
        stream: &StreamSettings<'_>,
        default: bool,
        outputs: &mut Vec<OutputEntry>,
    ) -> Result<()>;
}

/// Every output's flags, in the order the outputs are bound: the socket outputs first (so that
/// `--stdout` takes stdout before anything else is bound), then shared memory, ZeroMQ and HTTP.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// TCP, Unix, --connect, --stdout.
    #[command(flatten)]
    pub socket: SocketArgs,

    /// --shm.
    #[command(flatten)]
    pub shm: shm::ShmArgs,

    /// --zmq-*.
    #[command(flatten)]
    pub zmq: zmq::ZmqArgs,

    /// --http and the preview's settings.
    #[command(flatten)]
    pub http: http::HttpArgs,
}

impl OutputArgs {
    /// Each output's flags, in binding order.
    fn each(&self) -> [&dyn OutputFlags; 4] {
        [&self.socket, &self.shm, &self.zmq, &self.http]
    }

    /// The outputs the flags configure, checked, in binding order.
    pub fn configure(&self, stream: &StreamSettings<'_>) -> Result<Vec<OutputEntry>> {
        let each = self.each();
        let default = !each.iter().any(|flags| flags.asked());
        let mut outputs = Vec::new();
        for flags in each {
            flags.configure(stream, default, &mut outputs)?;
        }
        Ok(outputs)
    }
}
