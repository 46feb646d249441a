//! glstream: parse the command line, run the chosen job, turn errors into one line and an exit
//! code. Everything else lives in the modules below.

mod alloc_count;
mod bench;
mod capture;
mod cli;
mod compare;
mod format;
mod gl;
mod recv;
mod render;
mod scene;
mod serve;
mod snapshot;
mod stream;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};

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

fn devices() -> Result<()> {
    for device in gl::context::list_devices()? {
        println!(
            "{}: {}{}",
            device.index,
            if device.software {
                "software"
            } else {
                "hardware"
            },
            device
                .render_node
                .map(|node| format!(" ({node})"))
                .unwrap_or_default()
        );
        println!("   extensions: {}", device.extensions.join(" "));
    }
    Ok(())
}

fn run(command: Option<Command>, serve: cli::ServeArgs) -> Result<()> {
    match command {
        Some(Command::Devices) => devices(),
        Some(Command::Recv(args)) => recv::run(&args),
        Some(Command::Snapshot(args)) => snapshot::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        // Handled in main: compare has exit codes of its own.
        Some(Command::Compare(_)) => unreachable!("compare is dispatched before run"),
        None => serve::run(&serve.validate()?),
    }
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
    if let Some(Command::Compare(args)) = &cli.command {
        return compare::run(args);
    }
    match run(cli.command, cli.serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glstream: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
