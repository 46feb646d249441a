//! Options of `glstream snapshot`.

use std::ops::Range;
use std::path::PathBuf;

use clap::Args;

use super::RenderArgs;

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

    /// A control request (JSON, as --control takes them; see docs/control.md) to apply to the
    /// scene first: uniforms, camera, nodes, and the frame index when --frame is not given.
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,

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
