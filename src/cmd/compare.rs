//! `glstream compare`: fuzzy image comparison for screenshot tests.
//!
//! The model is Skia Gold's and ruffle's: a per-pixel tolerance on the largest channel difference,
//! plus a bound on how many pixels may exceed it. Exit 0 within bounds, 1 outside, 2 when an input
//! cannot be read or the sizes differ.
//!
//! Inputs larger than [`MAX_SIDE_PX`] a side or [`MAX_PIXELS`] in all are refused from their
//! header, before decoding. The diff image never replaces an input (same device and inode), and a
//! diff that cannot be written is a warning: the exit code is always the comparison's.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use image::RgbaImage;

use crate::capture;
use crate::cli::CompareArgs;

/// The widest or tallest image `compare` reads (the largest texture most GPUs take).
pub const MAX_SIDE_PX: u32 = 16384;
/// The most pixels an image `compare` reads may have: 8192 × 8192, so that the two inputs and
/// the diff stay under 1 GiB together.
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// The result of comparing two images of the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// Largest channel difference over all pixels.
    pub max_delta: u8,
    /// Pixels whose largest channel difference exceeds the tolerance.
    pub over_tolerance: u64,
    /// Pixels compared.
    pub total: u64,
}

fn delta(a: &image::Rgba<u8>, b: &image::Rgba<u8>) -> u8 {
    a.0.iter()
        .zip(b.0.iter())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Compares two images of equal size.
pub fn compare(expected: &RgbaImage, actual: &RgbaImage, tolerance: u8) -> Comparison {
    assert_eq!(expected.dimensions(), actual.dimensions());
    let mut result = Comparison {
        max_delta: 0,
        over_tolerance: 0,
        total: expected.width() as u64 * expected.height() as u64,
    };
    for (e, a) in expected.pixels().zip(actual.pixels()) {
        let d = delta(e, a);
        result.max_delta = result.max_delta.max(d);
        if d > tolerance {
            result.over_tolerance += 1;
        }
    }
    result
}

/// A picture of the differences: the expected image dimmed to grey, pixels over tolerance in red,
/// pixels that differ within tolerance in yellow.
pub fn diff_image(expected: &RgbaImage, actual: &RgbaImage, tolerance: u8) -> RgbaImage {
    RgbaImage::from_fn(expected.width(), expected.height(), |x, y| {
        let e = expected.get_pixel(x, y);
        let d = delta(e, actual.get_pixel(x, y));
        if d > tolerance {
            image::Rgba([255, 0, 0, 255])
        } else if d > 0 {
            image::Rgba([255, 210, 0, 255])
        } else {
            let luma = (e.0[0] as u32 * 3 + e.0[1] as u32 * 6 + e.0[2] as u32) / 10;
            let grey = (luma / 3 + 40) as u8;
            image::Rgba([grey, grey, grey, 255])
        }
    })
}

fn load(path: &Path) -> Result<RgbaImage> {
    let context = || format!("cannot read {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    capture::decode_rgba8(std::io::BufReader::new(file), MAX_SIDE_PX, MAX_PIXELS)
        .with_context(context)
}

/// Whether `a` and `b` are the same file (device and inode, through symlinks and hard links).
/// A path that does not exist is no file's twin.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Refuses a diff path that is EXPECTED or ACTUAL under another name.
fn check_diff_path(diff: &Path, args: &CompareArgs) -> Result<()> {
    for input in [&args.expected, &args.actual] {
        if same_file(diff, input) {
            bail!(
                "the diff {} would overwrite the input {}",
                diff.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// `NAME.png` → `NAME.diff.png`, beside it.
fn default_diff_path(actual: &Path) -> PathBuf {
    let stem = actual
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    actual.with_file_name(format!("{stem}.diff.png"))
}

fn compare_files(args: &CompareArgs) -> Result<bool> {
    // A --diff that can never be written is an error in the command line: say so before the
    // inputs are read.
    if let Some(diff) = &args.diff {
        capture::ensure_png_path(diff)?;
        check_diff_path(diff, args)?;
    }
    let expected = load(&args.expected)?;
    let actual = load(&args.actual)?;
    if expected.dimensions() != actual.dimensions() {
        bail!(
            "sizes differ: {} is {}x{}, {} is {}x{}",
            args.expected.display(),
            expected.width(),
            expected.height(),
            args.actual.display(),
            actual.width(),
            actual.height()
        );
    }
    let result = compare(&expected, &actual, args.tolerance);
    let allowed = args.max_outliers.allowed(result.total);
    let pass = result.over_tolerance <= allowed;
    println!(
        "{}: max delta {}, {} pixels over tolerance {} ({:.3}% of {}), {} allowed",
        if pass { "match" } else { "MISMATCH" },
        result.max_delta,
        result.over_tolerance,
        args.tolerance,
        result.over_tolerance as f64 * 100.0 / result.total.max(1) as f64,
        result.total,
        allowed
    );
    let diff_path = match &args.diff {
        Some(path) => Some(path.clone()),
        None if !pass => Some(default_diff_path(&args.actual)),
        None => None,
    };
    if let Some(path) = diff_path {
        // Checked again: the default path may be an input, and a file may have appeared since.
        let written = check_diff_path(&path, args).and_then(|()| {
            capture::save_png(&path, &diff_image(&expected, &actual, args.tolerance))
        });
        match written {
            Ok(()) => println!("diff written to {}", path.display()),
            // The verdict stands: a mismatch is exit 1 whether or not its picture was saved.
            Err(e) => eprintln!("glstream: warning: no diff image: {e:#}"),
        }
    }
    Ok(pass)
}

/// Runs the comparison: exit 0 within bounds, 1 outside. An input that cannot be compared is an
/// error, which the caller reports with exit status [`ERROR_STATUS`].
pub fn run(args: &CompareArgs) -> Result<ExitCode> {
    Ok(if compare_files(args)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The exit status of a comparison that could not be made (1 already means "differs").
pub const ERROR_STATUS: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_counts_pixels_over_tolerance() {
        let a = RgbaImage::from_pixel(4, 4, image::Rgba([100, 100, 100, 255]));
        let mut b = a.clone();
        b.put_pixel(0, 0, image::Rgba([103, 100, 100, 255]));
        b.put_pixel(1, 0, image::Rgba([100, 100, 140, 255]));
        assert_eq!(
            compare(&a, &b, 3),
            Comparison {
                max_delta: 40,
                over_tolerance: 1,
                total: 16
            }
        );
        let diff = diff_image(&a, &b, 3);
        assert_eq!(diff.get_pixel(1, 0).0, [255, 0, 0, 255]);
        assert_eq!(diff.get_pixel(0, 0).0, [255, 210, 0, 255]);
    }

    #[test]
    fn diff_goes_beside_actual() {
        assert_eq!(
            default_diff_path(Path::new("out/shot.png")),
            Path::new("out/shot.diff.png")
        );
    }
}
