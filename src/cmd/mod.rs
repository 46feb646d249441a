//! The jobs `main` can run, one module each. Each takes its validated arguments from [`crate::cli`]
//! and returns the process's exit code, or an error that `main` prints as one line.

pub mod bench;
pub mod compare;
pub mod control;
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

/// An error and its causes as one line, `error: cause: cause`, like anyhow's `{:#}` but with each
/// cause once. Many errors print their cause in their own message and also return it from
/// `source()` (a `thiserror` variant with `{source}` in its message, the image crate's decoding
/// errors); `{:#}` prints such a cause twice ("Address already in use (os error 98): Address
/// already in use (os error 98)"). A cause whose text the message before it ends with is left out.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line.push_str(&text);
        } else if !previous.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        previous = text;
    }
    line
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

#[cfg(test)]
mod tests {
    use super::error_line;
    use anyhow::Context;

    /// An error that embeds its cause in its message and also returns it as its source.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:9000: {source}")]
    struct Embeds {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(98);
        let text = io.to_string();
        let error = anyhow::Error::new(Embeds { source: io }).context("serving");
        let line = error_line(&error);
        assert_eq!(
            line,
            format!("serving: cannot listen on 127.0.0.1:9000: {text}")
        );
        assert_eq!(line.matches(&text).count(), 1, "{line}");
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let error: anyhow::Error = Err::<(), _>(std::io::Error::other("disk full"))
            .context("cannot write out.png")
            .context("frame 3")
            .unwrap_err();
        assert_eq!(
            error_line(&error),
            "frame 3: cannot write out.png: disk full"
        );
    }
}
