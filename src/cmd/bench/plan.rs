//! What `glstream bench` measures: the configurations, validated from the arguments.

use anyhow::{Result, bail};

use crate::cli::{BenchArgs, BenchTransport, MAX_PBO_COUNT};
use crate::render::RenderOptions;
use crate::stream::protocol::HeaderMode;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Render, then `glFinish`.
    Render,
    /// Render and read back through the ring.
    Readback,
    /// The real stream loop to a consumer process.
    EndToEnd(BenchTransport),
}

/// One configuration: a mode and, except for render-only, a ring length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// What is measured.
    pub mode: Mode,
    /// The ring length.
    pub pbo_count: usize,
}

impl Config {
    /// The mode as the table and the JSON name it.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Render => "render",
            Mode::Readback => "readback",
            Mode::EndToEnd(_) => "e2e",
        }
    }

    /// The transport as the table and the JSON name it (`-` for none).
    pub fn transport_name(&self) -> &'static str {
        match self.mode {
            Mode::EndToEnd(transport) => transport.name(),
            _ => "-",
        }
    }
}

/// Validated bench options.
pub struct Plan {
    /// Size, scene and device (the ring length comes from each configuration).
    pub render: RenderOptions,
    /// Every configuration, in the order each round runs them.
    pub configs: Vec<Config>,
    /// Frames measured per run.
    pub frames: u64,
    /// Frames rendered before measuring.
    pub warmup: u64,
    /// Runs per configuration.
    pub repeats: usize,
}

/// Checks the arguments and lists the configurations.
pub fn plan(args: &BenchArgs) -> Result<Plan> {
    let render = args.render.validate()?;
    HeaderMode::Blender.check_size(render.width_px, render.height_px, render.format)?;
    if args.frames == 0 {
        bail!("--frames 0: nothing to measure");
    }
    if args.repeats == 0 {
        bail!("--repeats 0: nothing to measure");
    }
    if args.pbo_counts.is_empty() {
        bail!("--pbo-counts: name at least one ring length");
    }
    if let Some(bad) = args
        .pbo_counts
        .iter()
        .find(|k| !(1..=MAX_PBO_COUNT).contains(*k))
    {
        bail!("--pbo-counts {bad}: each must be between 1 and {MAX_PBO_COUNT}");
    }
    let mut configs = vec![Config {
        mode: Mode::Render,
        pbo_count: 1,
    }];
    for &pbo_count in &args.pbo_counts {
        configs.push(Config {
            mode: Mode::Readback,
            pbo_count,
        });
    }
    for &transport in &args.transports {
        for &pbo_count in &args.pbo_counts {
            configs.push(Config {
                mode: Mode::EndToEnd(transport),
                pbo_count,
            });
        }
    }
    configs.dedup();
    Ok(Plan {
        render,
        configs,
        frames: args.frames,
        warmup: args.warmup,
        repeats: args.repeats,
    })
}
