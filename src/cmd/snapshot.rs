//! `glstream snapshot`: render chosen frame indices through the streaming pipeline and write them
//! as PNGs (rows top-down), for screenshot regression tests in CI. Other formats become the
//! matching PNG: RGB, 8-bit grey, or 16-bit grey for depth.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::capture;
use crate::cli::SnapshotArgs;
use crate::render::{self, Renderer};

/// The file a frame of a range goes to.
pub fn frame_file(dir: &Path, frame_index: u64) -> PathBuf {
    dir.join(format!("frame_{frame_index:06}.png"))
}

/// Renders and writes the snapshot(s).
pub fn run(args: &SnapshotArgs) -> Result<()> {
    if args.render.flip {
        bail!(
            "--flip: a snapshot is always written top-down (--flip only changes the row order a \
             stream sends); drop --flip"
        );
    }
    let options = args.render.validate()?;
    let shape = options.shape();
    if let Some(range) = &args.frames {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        let context = render::context(&options)?;
        let mut renderer = Renderer::new(&context, &options)?;
        let total = range.end - range.start;
        let progress = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} frames {msg}")
                    .expect("the template is a valid literal"),
            );
            bar
        });
        let mut written = 0;
        renderer.render_range(range.clone(), |lease| {
            let path = frame_file(&args.output, lease.meta().frame_index);
            capture::save_frame_png(&path, &shape, lease.bytes())?;
            written += 1;
            match &progress {
                Some(bar) => bar.inc(1),
                None => log::info!("wrote {} ({written}/{total})", path.display()),
            }
            Ok(())
        })?;
        if let Some(bar) = progress {
            bar.finish_with_message(format!("in {}", args.output.display()));
        }
        return Ok(());
    }
    if args.output.is_dir() {
        bail!(
            "--output {} is a directory; give a .png file (or use --frames A..B)",
            args.output.display()
        );
    }
    // Before the renderer starts, so that a refused name costs nothing and leaves nothing.
    capture::ensure_png_path(&args.output)?;
    let frame_index = args.frame.unwrap_or(0);
    let context = render::context(&options)?;
    let mut renderer = Renderer::new(&context, &options)?;
    renderer.render_range([frame_index], |lease| {
        capture::save_frame_png(&args.output, &shape, lease.bytes())
    })?;
    log::info!("wrote frame {frame_index} to {}", args.output.display());
    Ok(())
}
