//! glstream as a library: the binary's whole job ([`main`]), and the contracts other programs
//! depend on, for the integration tests and for Rust consumers: the wire headers
//! ([`stream::protocol`]), the shared-memory header ([`stream::shm::FrameHeader`]), the seam every
//! output implements ([`stream::output`]), the pixel formats ([`format`]) and the pattern decoder
//! ([`pattern_code`]). Everything else is the crate's own.
//!
//! Dependencies point one way, as the data flows:
//! `cli → cmd → {scene, stream, capture, render} → gl`. `stream/` never sees glow or clap; `gl/`
//! never sees a socket; `pattern_code` and `format` depend on nothing.

use std::process::ExitCode;

mod alloc_count;
mod capture;
mod cli;
mod cmd;
pub mod codec;
pub mod control;
pub mod format;
mod gl;
pub mod pattern_code;
mod render;
mod scene;
pub mod stream;

/// The counting allocator the binary installs, so that `bench` can show the frame loop makes no
/// allocation (it counts only while `bench` runs).
pub use alloc_count::Counting as CountingAllocator;
/// `glstream compare`'s verdict on two images, for tests that compare PNGs the way it does.
pub use cmd::compare::compare;

use cli::Cli;

fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => log::LevelFilter::Info,
        (1, _) => log::LevelFilter::Debug,
        (v, _) if v >= 2 => log::LevelFilter::Trace,
        (_, 1) => log::LevelFilter::Warn,
        _ => log::LevelFilter::Error,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .format_target(false)
        .init();
}

/// The whole process: parse the command line, set up logging, run the chosen job, and turn
/// its outcome into an exit code (errors as one line on stderr).
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_checked_from(&args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // All of clap's lines: the first alone may be a heading ("the following required
            // arguments were not provided:") whose list follows.
            eprint!("{}", cli::usage_error(&e, &args));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("glstream: error: {}", cmd::error_line(&failure.error));
            ExitCode::from(failure.status)
        }
    }
}
