//! Options of `glstream bench`.

use clap::{Args, ValueEnum};

use super::RenderArgs;

/// Options of `glstream bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Size, device and scene (`--pbo-count` is ignored: see `--pbo-counts`).
    #[command(flatten)]
    pub render: RenderArgs,

    /// PBO ring lengths to measure readback and end-to-end with, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub pbo_counts: Vec<usize>,

    /// Frames measured per run, after the warm-up.
    #[arg(long, default_value_t = 300)]
    pub frames: u64,

    /// Frames rendered before measuring starts (first-use costs: page faults, shader variants).
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,

    /// Runs per configuration; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,

    /// Transports for the end-to-end runs, comma-separated: tcp, unix, shm. The list replaces
    /// the default (`--transports tcp,unix,shm` for all three).
    #[arg(long, value_delimiter = ',', default_value = "tcp,unix")]
    pub transports: Vec<BenchTransport>,
}

/// Where end-to-end frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTransport {
    /// Loopback TCP.
    Tcp,
    /// A Unix domain socket in the temporary directory.
    Unix,
    /// The iceoryx2 shared-memory output (`--shm`), to `glstream recv --shm`.
    Shm,
}

impl BenchTransport {
    pub fn name(self) -> &'static str {
        match self {
            BenchTransport::Tcp => "tcp",
            BenchTransport::Unix => "unix",
            BenchTransport::Shm => "shm",
        }
    }
}
