//! `glstream bench`: how fast each stage of the pipeline is, measured in one run.
//!
//! Three modes, each through the same [`Renderer`] the server uses:
//! - **render**: draw, then `glFinish`, so the time is the rasterizer's and not just submission;
//! - **readback**: draw and read back through a ring of k PBOs, mapping every frame but touching
//!   none of its bytes;
//! - **e2e**: the real [`crate::cmd::serve::stream`] loop, lossless, to a separate `glstream recv` process
//!   reading every byte over loopback TCP or a Unix socket.
//!
//! Every configuration runs `--repeats` times, alternating (all configurations once, then all
//! again), and the table reports medians: these machines are shared and noisy, and alternating
//! spreads a noisy minute over every configuration instead of one. The first `--warmup` frames of
//! each run are not measured. Within the measured window the counting allocator
//! ([`crate::alloc_count`]) must see nothing: the frame loop is meant not to allocate.
//!
//! With `--compress`, the bench measures codecs instead ([`compress`]): every frame encoded by
//! the server's encode-once stage with each codec, decoded as `recv` decodes it, and checked.
//!
//! The table is for people; the last line of stdout is one JSON object for scripts.
//!
//! Split by concern: [`plan`] turns the arguments into configurations, [`measure`] runs one, and
//! [`report`] turns the samples into medians, the table and the JSON.

mod compress;
mod measure;
mod plan;
mod report;

use anyhow::{Context, Result};

use crate::cli::BenchArgs;
use crate::render::{self, RenderOptions, Renderer};

use measure::Sample;
use plan::Mode;
use report::Summary;

/// Runs every configuration `--repeats` times, alternating, and prints the table and the JSON.
pub fn run(args: &BenchArgs) -> Result<()> {
    let plan = plan::plan(args)?;
    if !args.compress.is_empty() {
        return compress::run(args, &plan.render);
    }
    crate::alloc_count::start_counting();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); plan.configs.len()];
    let mut renderer_name = String::new();
    for repeat in 0..plan.repeats {
        for (config, runs) in plan.configs.iter().zip(&mut samples) {
            log::info!(
                "bench run {}/{}: {} {} PBOs {}",
                repeat + 1,
                plan.repeats,
                config.mode_name(),
                config.pbo_count,
                config.transport_name()
            );
            let options = RenderOptions {
                pbo_count: config.pbo_count,
                ..plan.render.clone()
            };
            let context = render::context(&options)?;
            let mut renderer = Renderer::new(&context, &options)?;
            if renderer_name.is_empty() {
                renderer_name = renderer.context_info().renderer.clone();
            }
            let sample = match config.mode {
                Mode::Render => measure::render_only(&mut renderer, plan.warmup, plan.frames),
                Mode::Readback => measure::readback(&mut renderer, plan.warmup, plan.frames),
                Mode::EndToEnd(transport) => measure::end_to_end(
                    &mut renderer,
                    &options,
                    transport,
                    plan.warmup,
                    plan.frames,
                ),
            }
            .with_context(|| {
                format!(
                    "bench {} with {} PBOs {}",
                    config.mode_name(),
                    config.pbo_count,
                    config.transport_name()
                )
            })?;
            runs.push(sample);
        }
    }
    let summary = Summary::new(&plan, &samples, renderer_name);
    print!("{}", summary.table());
    println!("{}", summary.json());
    Ok(())
}
