//! `glstream devices`: the EGL devices `--device N` can pick.

use std::process::ExitCode;

use anyhow::Result;

use crate::gl::context::list_devices;

/// Prints one line per device (index, software or hardware, render node) and its extensions.
pub fn run() -> Result<ExitCode> {
    for device in list_devices()? {
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
    Ok(ExitCode::SUCCESS)
}
