//! `glstream snapshot`: render chosen frame indices through the streaming pipeline and write them
//! as PNGs (rows top-down), for screenshot regression tests in CI. Other formats become the
//! matching PNG: RGB, 8-bit grey, or 16-bit grey for depth.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::capture;
use crate::cli::RenderArgs;
use crate::render::Renderer;

/// Options of `glstream snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Size, device, ring and scene, as for serving.
    #[command(flatten)]
    pub render: RenderArgs,

    /// The frame index to render.
    #[arg(long, conflicts_with = "frames")]
    pub frame: Option<u64>,

    /// A range of frame indices, `A..B` (B excluded) or `A..=B`; --output is then a directory.
    #[arg(long, value_parser = parse_range)]
    pub frames: Option<Range<u64>>,

    /// The PNG to write, or with --frames the directory for frame_NNNNNN.png files. Each file is
    /// written under a temporary name and renamed when complete.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Parses `A..B` or `A..=B` into a half-open range.
fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let bad = || format!("'{text}' is not a range like 0..10 or 0..=9");
    let (start, end) = text.split_once("..").ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = match end.strip_prefix('=') {
        Some(inclusive) => inclusive
            .trim()
            .parse::<u64>()
            .map_err(|_| bad())?
            .checked_add(1)
            .ok_or_else(bad)?,
        None => end.trim().parse().map_err(|_| bad())?,
    };
    if end <= start {
        return Err(format!("'{text}' is empty"));
    }
    Ok(start..end)
}

/// The file a frame of a range goes to.
pub fn frame_file(dir: &Path, frame_index: u64) -> PathBuf {
    dir.join(format!("frame_{frame_index:06}.png"))
}

/// Renders and writes the snapshot(s).
pub fn run(args: &SnapshotArgs) -> Result<()> {
    let options = args.render.validate()?;
    let (width_px, height_px) = (options.width_px, options.height_px);
    let (format, top_down) = (options.format, options.flip);
    if let Some(range) = &args.frames {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        let mut renderer = Renderer::new(&options)?;
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
            let path = frame_file(&args.output, lease.frame_index());
            capture::save_frame_png(&path, width_px, height_px, format, lease.bytes(), top_down)?;
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
    let mut renderer = Renderer::new(&options)?;
    renderer.render_range([frame_index], |lease| {
        capture::save_frame_png(
            &args.output,
            width_px,
            height_px,
            format,
            lease.bytes(),
            top_down,
        )
    })?;
    log::info!("wrote frame {frame_index} to {}", args.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_both_ways() {
        assert_eq!(parse_range("3..7"), Ok(3..7));
        assert_eq!(parse_range("3..=7"), Ok(3..8));
        assert!(parse_range("7..3").is_err());
        assert!(parse_range("5").is_err());
        assert!(parse_range("a..b").is_err());
        assert!(parse_range("0..=18446744073709551615").is_err());
    }
}
