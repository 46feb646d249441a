//! glstream: parse the command line, run the chosen job, turn errors into one line and an exit
//! code. The jobs live in the library (`glstream::cmd`).

use std::process::ExitCode;

use clap::Parser;

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's message is several lines (usage, hints); the first says what was wrong.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("glstream: {}", first.trim_start_matches("error: "));
            eprintln!("glstream: see `glstream --help`");
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
