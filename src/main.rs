//! glstream: parse the command line, run the chosen job, turn errors into one line and an exit
//! code. The jobs live in the library (`glstream::cmd`).

use std::process::ExitCode;

use glstream::alloc_count;
use glstream::cli::Cli;

/// Counts allocations so `bench` can show the frame loop makes none.
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

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

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_checked_from(&args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // All of clap's lines: the first alone may be a heading ("the following required
            // arguments were not provided:") whose list follows.
            eprint!("{}", glstream::cli::usage_error(&e, &args));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match glstream::cmd::run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!(
                "glstream: error: {}",
                glstream::cmd::error_line(&failure.error)
            );
            ExitCode::from(failure.status)
        }
    }
}
