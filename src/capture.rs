//! PNG files from frames: frames arrive bottom-up (OpenGL order) unless the stream was flipped on
//! the GPU, and PNGs are written top-down, as image viewers show them.
//!
//! Every file glstream writes goes through [`write_atomically`]: a temporary file beside the
//! target, renamed over it once complete, so an output is either whole or absent (never empty or
//! half-written), and a refused or failed write leaves nothing behind. Every image file glstream
//! reads goes through [`decode_rgba8`], which checks the dimensions in the header against the
//! caller's limit before the decoder allocates anything.

use std::fs::File;
use std::io::{BufRead, BufWriter, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType, ImageBuffer, ImageDecoder, ImageEncoder};
use thiserror::Error;

use crate::format::{Format, FrameShape};

/// Rows reversed; `stride_bytes` per row.
pub fn flip_rows(pixels: &[u8], stride_bytes: usize) -> Vec<u8> {
    assert!(stride_bytes > 0 && pixels.len().is_multiple_of(stride_bytes));
    pixels
        .chunks_exact(stride_bytes)
        .rev()
        .flatten()
        .copied()
        .collect()
}

/// Refuses a path that does not end in `.png` (any case): glstream writes PNG only, and says so
/// before it creates anything.
pub fn ensure_png_path(path: &Path) -> Result<()> {
    let is_png = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "{}: glstream writes PNG files only; give a name ending in .png",
            path.display()
        );
    }
    Ok(())
}

/// Writes `path` through a temporary file beside it (tempfile's `.NAME.XXXXXX.tmp`, created
/// with `O_EXCL` in the same folder, so the rename cannot cross filesystems) that is renamed over
/// `path` once `write` has succeeded: a reader sees the old file or the whole new one, and a
/// failure leaves no file behind. On failure the temporary file is removed only while it is
/// still the one this call created (same device and inode), which tempfile's own clean-up, by
/// path, would not check. This guards against our own failures and concurrent readers, not
/// power loss: nothing is fsynced.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    let context = || format!("cannot write {}", path.display());
    let name = path
        .file_name()
        .with_context(|| format!("{} does not name a file", path.display()))
        .with_context(context)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(context)?;
    let identity = temp
        .as_file()
        .metadata()
        .map(|m| (m.dev(), m.ino()))
        .with_context(context)?;
    let written = (|| -> Result<()> {
        let mut writer = BufWriter::new(temp.as_file());
        write(&mut writer)?;
        writer.flush()?;
        Ok(())
    })();
    let result = match written {
        Ok(()) => temp.persist(path).map(drop).map_err(|e| {
            let temp_path = e.file.path().to_path_buf();
            remove_if_ours(e.file.into_temp_path(), &temp_path, identity);
            anyhow::Error::from(e.error)
        }),
        Err(e) => {
            let temp_path = temp.path().to_path_buf();
            remove_if_ours(temp.into_temp_path(), &temp_path, identity);
            Err(e)
        }
    };
    result.with_context(context)
}

/// Removes the temporary file at `path` if it is still the file (device, inode) this process
/// created; tempfile's clean-up by path is switched off first.
fn remove_if_ours(temp: tempfile::TempPath, path: &Path, identity: (u64, u64)) {
    // Keep: no removal by path alone; ours is checked below.
    let _ = temp.keep();
    let still_ours = std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == identity);
    if still_ours && let Err(e) = std::fs::remove_file(path) {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}

/// Encodes `image` as a PNG into `path`, atomically (see [`write_atomically`]).
pub fn save_png<P: image::PixelWithColorType>(
    path: &Path,
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
) -> Result<()>
where
    [P::Subpixel]: image::EncodableLayout,
{
    ensure_png_path(path)?;
    write_atomically(path, |writer| {
        Ok(image.write_with_encoder(PngEncoder::new(writer))?)
    })
}

/// Writes a frame as a PNG with rows top-down: RGBA for rgba8 and bgra8 (swizzled back), RGB for
/// rgb8, 8-bit grey for gray8, and 16-bit grey for depth32f (depth × 65535).
pub fn save_frame_png(path: &Path, shape: &FrameShape, pixels: &[u8]) -> Result<()> {
    ensure_png_path(path)?;
    check_frame(shape, pixels)?;
    write_atomically(path, |writer| write_frame_png(writer, shape, pixels))
}

/// The PNG file [`save_frame_png`] writes, in memory (the HTTP output's `/frame.png`).
pub fn frame_png(shape: &FrameShape, pixels: &[u8]) -> Result<Vec<u8>> {
    check_frame(shape, pixels)?;
    let mut png = Vec::new();
    write_frame_png(&mut png, shape, pixels)?;
    Ok(png)
}

fn check_frame(shape: &FrameShape, pixels: &[u8]) -> Result<()> {
    let FrameShape {
        width_px,
        height_px,
        format,
        ..
    } = *shape;
    ensure!(
        width_px > 0 && height_px > 0,
        "cannot save an empty {width_px}x{height_px} frame"
    );
    ensure!(
        pixels.len() as u64 == format.frame_bytes(width_px, height_px),
        "{} bytes is not a {width_px}x{height_px} {} frame",
        pixels.len(),
        format.name()
    );
    Ok(())
}

/// Encodes a checked frame as a PNG into `writer`, rows top-down.
fn write_frame_png(writer: impl Write, shape: &FrameShape, pixels: &[u8]) -> Result<()> {
    let FrameShape {
        width_px,
        height_px,
        format,
        top_down,
    } = *shape;
    let stride_bytes = (width_px * format.bytes_per_pixel()) as usize;
    let rows = if top_down {
        pixels.to_vec()
    } else {
        flip_rows(pixels, stride_bytes)
    };
    let encode = |rows: &[u8], color: ExtendedColorType| -> Result<()> {
        Ok(PngEncoder::new(writer).write_image(rows, width_px, height_px, color)?)
    };
    match format {
        Format::Rgba8 => encode(&rows, ExtendedColorType::Rgba8),
        Format::Bgra8 => {
            let rgba: Vec<u8> = rows
                .chunks_exact(4)
                .flat_map(|p| [p[2], p[1], p[0], p[3]])
                .collect();
            encode(&rgba, ExtendedColorType::Rgba8)
        }
        Format::Rgb8 => encode(&rows, ExtendedColorType::Rgb8),
        Format::Gray8 => encode(&rows, ExtendedColorType::L8),
        Format::Depth32f => {
            // 16-bit samples in native byte order, as the encoder takes them.
            let depth: Vec<u8> = rows
                .chunks_exact(4)
                .flat_map(|b| {
                    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    ((d.clamp(0.0, 1.0) * 65535.0).round() as u16).to_ne_bytes()
                })
                .collect();
            encode(&depth, ExtendedColorType::L16)
        }
    }
}

/// Why an image file could not be loaded.
#[derive(Debug, Error)]
pub enum ImageLoadError {
    /// The header declares more pixels than the caller accepts; nothing was decoded.
    #[error(
        "its header says {width_px}x{height_px}, over the limit of {max_side_px} pixels a side \
         and {max_pixels} pixels in all"
    )]
    TooLarge {
        /// Declared width.
        width_px: u32,
        /// Declared height.
        height_px: u32,
        /// The largest width or height accepted.
        max_side_px: u32,
        /// The largest width × height accepted.
        max_pixels: u64,
    },
    /// Not an image the decoder understands, a corrupt one, or a read error.
    #[error(transparent)]
    Decode(#[from] image::ImageError),
}

/// Decodes an image (its format guessed from its first bytes) to RGBA8, after checking the
/// dimensions its header declares against `max_side_px` and `max_pixels`: a small file that
/// declares a huge image is refused before the decoder allocates for it. The decoder then runs
/// under `image`'s default limits (512 MiB per allocation) as a second line of defence.
pub fn decode_rgba8(
    reader: impl BufRead + Seek,
    max_side_px: u32,
    max_pixels: u64,
) -> Result<image::RgbaImage, ImageLoadError> {
    let mut reader = image::ImageReader::new(reader)
        .with_guessed_format()
        .map_err(image::ImageError::IoError)?;
    // Limits are checked below with a message that gives the size; the decoder's own check
    // would only say "a limit was exceeded".
    reader.no_limits();
    let mut decoder = reader.into_decoder()?;
    let (width_px, height_px) = decoder.dimensions();
    if width_px > max_side_px
        || height_px > max_side_px
        || u64::from(width_px) * u64::from(height_px) > max_pixels
    {
        return Err(ImageLoadError::TooLarge {
            width_px,
            height_px,
            max_side_px,
            max_pixels,
        });
    }
    decoder.set_limits(image::Limits::default())?;
    Ok(DynamicImage::from_decoder(decoder)?.to_rgba8())
}

#[cfg(test)]
mod tests {
    use super::flip_rows;

    #[test]
    fn flip_reverses_rows_and_keeps_pixels() {
        // 2x3 image, each row a distinct value.
        let rows: Vec<u8> = [1u8, 2, 3].iter().flat_map(|&r| [r; 8]).collect();
        let flipped = flip_rows(&rows, 8);
        assert_eq!(&flipped[..8], &[3; 8]);
        assert_eq!(&flipped[16..], &[1; 8]);
        assert_eq!(flip_rows(&flipped, 8), rows);
    }
}
