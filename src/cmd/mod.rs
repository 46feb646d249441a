//! The jobs `main` can run, one module each. Each takes its validated arguments from [`crate::cli`]
//! and returns the process's exit code, or an error that `main` prints as one line.

pub mod bench;
pub mod compare;
pub mod devices;
pub mod recv;
pub mod serve;
pub mod snapshot;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// A job that failed: the error to print as one line, and the exit status it means.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit status (1, or a job's own, such as `compare`'s 2).
    pub status: u8,
    /// What went wrong, with its causes.
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self { status: 1, error }
    }
}

/// Runs the job the command line chose.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    Ok(match cli.command {
        Some(Command::Devices) => devices::run()?,
        Some(Command::Recv(args)) => recv::run(&args).map(|()| ExitCode::SUCCESS)?,
        Some(Command::Snapshot(args)) => snapshot::run(&args).map(|()| ExitCode::SUCCESS)?,
        Some(Command::Bench(args)) => bench::run(&args).map(|()| ExitCode::SUCCESS)?,
        Some(Command::Compare(args)) => compare::run(&args).map_err(|error| Failure {
            status: compare::ERROR_STATUS,
            error,
        })?,
        None => serve::run(&cli.serve.validate()?).map(|()| ExitCode::SUCCESS)?,
    })
}
