//! `glstream snapshot`: render chosen frame indices through the streaming pipeline and write them
//! as PNGs (rows top-down), for screenshot regression tests in CI. Other formats become the
//! matching PNG: RGB, 8-bit grey, or 16-bit grey for depth.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::capture;
use crate::cli::SnapshotArgs;
use crate::control::{self, MAX_REQUEST_BYTES, Request};
use crate::render::{self, Renderer};

/// The file a frame of a range goes to.
pub fn frame_file(dir: &Path, frame_index: u64) -> PathBuf {
    dir.join(format!("frame_{frame_index:06}.png"))
}

/// Reads a control request from `path`: at most the size a control socket takes, checked
/// whole before anything renders.
fn read_request(path: &Path) -> Result<Request> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("--request {}: cannot open it", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("--request {}: cannot read it", path.display()))?;
    control::parse(&bytes)
        .map_err(|refused| anyhow::anyhow!("--request {}: {}", path.display(), refused.error))
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
    let request = match &args.request {
        Some(path) => Some(read_request(path)?),
        None => None,
    };
    if let Some(request) = &request
        && request.frame.is_some()
        && (args.frame.is_some() || args.frames.is_some())
    {
        bail!(
            "--request {} names frame {} and --frame/--frames names another: give one",
            args.request.as_deref().unwrap_or(Path::new("")).display(),
            request.frame.unwrap_or(0)
        );
    }
    let apply = |renderer: &mut Renderer<'_>| -> Result<()> {
        if let (Some(request), Some(path)) = (&request, &args.request) {
            renderer
                .apply(&request.settings)
                .map_err(|e| anyhow::anyhow!("--request {}: {e}", path.display()))?;
        }
        Ok(())
    };
    if let Some(range) = &args.frames {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?;
        let context = render::context(&options)?;
        let mut renderer = Renderer::new(&context, &options)?;
        apply(&mut renderer)?;
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
    let frame_index = args
        .frame
        .or(request.as_ref().and_then(|r| r.frame))
        .unwrap_or(0);
    let context = render::context(&options)?;
    let mut renderer = Renderer::new(&context, &options)?;
    apply(&mut renderer)?;
    renderer.render_range([frame_index], |lease| {
        capture::save_frame_png(&args.output, &shape, lease.bytes())
    })?;
    log::info!("wrote frame {frame_index} to {}", args.output.display());
    Ok(())
}
