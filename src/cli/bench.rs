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

    /// Measure these `--compress` codecs instead of the pipeline, comma-separated: qoi,
    /// zstd[:LEVEL], lz4, jpeg[:QUALITY], or `all` (qoi,zstd,lz4,jpeg). Every rendered frame is
    /// encoded with each, as the server encodes it, then decoded and (lossless codecs) checked
    /// byte for byte; the table gives ratio, encode and decode ms per frame and the fps each
    /// sustains. `--pbo-counts`, `--transports` and `--repeats` do not apply.
    #[arg(long, value_delimiter = ',', value_name = "CODEC[,CODEC...]")]
    pub compress: Vec<String>,

    /// With --compress: the threads that encode (and decode) a frame's strips, and the strips
    /// a frame is cut into, as the server's `--compress-threads` (default: available cores).
    #[arg(long, value_name = "N")]
    pub compress_threads: Option<usize>,
}

/// Where end-to-end frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTransport {
    /// Loopback TCP.
    Tcp,
    /// A Unix domain socket in the temporary directory.
    Unix,
    /// The iceoryx2 shared-memory output (`--shm`, `--shm-readback auto`), to `glstream recv
    /// --shm`.
    Shm,
    /// The same with `--shm-readback pbo`: through the PBO ring and a copy into each sample.
    #[value(name = "shm-pbo")]
    ShmPbo,
    /// The same with `--shm-readback direct`: read straight into each sample on any renderer.
    #[value(name = "shm-direct")]
    ShmDirect,
}

impl BenchTransport {
    pub fn name(self) -> &'static str {
        match self {
            BenchTransport::Tcp => "tcp",
            BenchTransport::Unix => "unix",
            BenchTransport::Shm => "shm",
            BenchTransport::ShmPbo => "shm-pbo",
            BenchTransport::ShmDirect => "shm-direct",
        }
    }
}

impl BenchArgs {
    /// `--compress-threads`, checked as the server checks it (default: available cores).
    pub fn compress_threads(&self) -> anyhow::Result<usize> {
        use super::serve::MAX_COMPRESS_THREADS;
        match self.compress_threads {
            Some(n) if !(1..=MAX_COMPRESS_THREADS).contains(&n) => {
                anyhow::bail!(
                    "--compress-threads {n}: must be between 1 and {MAX_COMPRESS_THREADS}"
                )
            }
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }
}
