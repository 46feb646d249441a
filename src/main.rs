//! glstream: parse the command line, run the chosen job, turn errors into one line and an exit
//! code. Everything else lives in the modules below.

mod capture;
mod cli;
mod gl;
mod recv;
mod scene;
mod serve;
mod stream;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};

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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Devices) => devices(),
        Some(Command::Recv(args)) => recv::run(&args),
        None => serve::run(&cli.serve.validate()?),
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("glstream: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
