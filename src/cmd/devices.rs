//! `glstream devices`: the EGL devices `--device N` can pick.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::gl::context::list_devices;

/// Prints one line per device (index, software or hardware, render node) and its extensions.
/// A reader that stops early (`glstream devices | head -1`) ends the listing quietly.
pub fn run() -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for device in list_devices()? {
        let kind = if device.software {
            "software"
        } else {
            "hardware"
        };
        let node = device
            .render_node
            .map(|node| format!(" ({node})"))
            .unwrap_or_default();
        let written = writeln!(out, "{}: {kind}{node}", device.index)
            .and_then(|()| writeln!(out, "   extensions: {}", device.extensions.join(" ")))
            .and_then(|()| out.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other.context("cannot write to standard output")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
