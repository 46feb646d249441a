//! Options of `glstream recv`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgGroup, Args};

use crate::format::Format;
use crate::stream::protocol::HeaderMode;
use crate::stream::zmq::RecvPattern;

use super::outputs::MAX_ZMQ_HWM;

/// Options of `glstream recv`. One source is required, and a missing one is reported with
/// every kind there is (TCP, Unix, ZeroMQ, shared memory), not only the first.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .multiple(true)
        .args(["connect", "unix", "zmq_bind", "zmq_connect", "shm"])
))]
pub struct RecvArgs {
    /// TCP server to read from, e.g. 127.0.0.1:9000.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,

    /// Unix domain socket to read from.
    #[arg(long, value_name = "PATH", conflicts_with = "connect")]
    pub unix: Option<PathBuf>,

    /// ZeroMQ: bind this endpoint and collect from the producers that connect (tcp://HOST:PORT,
    /// tcp://HOST:* for any free port, ipc://PATH); repeatable. Frames are [glstream header,
    /// payload] messages; --save names files by frame index.
    #[arg(long = "zmq-bind", value_name = "ENDPOINT", conflicts_with_all = ["connect", "unix", "shm"])]
    pub zmq_bind: Vec<String>,

    /// ZeroMQ: connect to a producer's endpoint; repeatable.
    #[arg(long = "zmq-connect", value_name = "ENDPOINT", conflicts_with_all = ["connect", "unix", "shm"])]
    pub zmq_connect: Vec<String>,

    /// ZeroMQ pattern: pull (from push producers) or sub (from a pub producer).
    #[arg(long, value_enum, default_value_t = RecvPattern::Pull)]
    pub zmq_pattern: RecvPattern,

    /// ZeroMQ receive high-water mark, in frames per producer (1 to 1024).
    #[arg(long, default_value_t = 2)]
    pub zmq_hwm: u32,

    /// iceoryx2 shared-memory service to subscribe to (glstream --shm SERVICE); its header
    /// carries size, format and row order, so --header, --format and --top-down do not apply.
    #[arg(long, value_name = "SERVICE", conflicts_with_all = ["connect", "unix"])]
    pub shm: Option<String>,

    /// Header the server sends.
    #[arg(long, value_enum, default_value_t = HeaderMode::Blender)]
    pub header: HeaderMode,

    /// Pixel format the server sends (a glstream header names its own).
    #[arg(long, value_enum, default_value_t = Format::Rgba8)]
    pub format: Format,

    /// The rows arrive top-down (the server runs with --flip); a glstream header says so itself.
    #[arg(long)]
    pub top_down: bool,

    /// Frame width; needed with --header raw, checked against the headers otherwise.
    #[arg(long)]
    pub width: Option<u32>,

    /// Frame height; needed with --header raw, checked against the headers otherwise.
    #[arg(long)]
    pub height: Option<u32>,

    /// Stop after this many frames (default: until the server closes the stream).
    #[arg(long)]
    pub frames: Option<u64>,

    /// Save frames as PNG (rows top-down) into this directory, as frame_NNNNNN.png. NNNNNN is the
    /// frame index when the stream carries one (--header glstream, or the index the pattern
    /// encodes with --verify-pattern), so the names match `snapshot --frames`; otherwise it is
    /// the count of frames received before this one (0, 1, 2, ...), whatever the server's index.
    #[arg(long)]
    pub save: Option<PathBuf>,

    /// With --save, keep every K-th frame received (the 1st, the K+1-th, ...).
    #[arg(long, default_value_t = 1)]
    pub every: u64,

    /// Read each frame's index from the `pattern` scene and fail on a frame that is not one, on
    /// frames out of order, or on more than --max-drops missing frames. With --zmq-*, frames
    /// may arrive in any order: it reports missing and duplicate indices and fails on a
    /// duplicate or more than --max-drops missing.
    #[arg(long)]
    pub verify_pattern: bool,

    /// With --verify-pattern, how many frames may be missing between those received.
    #[arg(long, default_value_t = 0)]
    pub max_drops: u64,

    /// Give up, with an error saying how much of the frame arrived, when a whole frame (header
    /// and payload) has not arrived within this many seconds of being waited for.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub timeout: f64,
}

impl RecvArgs {
    /// `--zmq-hwm`, checked as the producer's is: 0 would mean no limit to libzmq, and values
    /// over `i32::MAX` would wrap.
    pub fn zmq_hwm(&self) -> Result<u32> {
        if !(1..=MAX_ZMQ_HWM).contains(&self.zmq_hwm) {
            bail!(
                "--zmq-hwm {}: must be between 1 and {MAX_ZMQ_HWM} frames",
                self.zmq_hwm
            );
        }
        Ok(self.zmq_hwm)
    }
}
