//! PNG files from frames: frames arrive bottom-up (OpenGL order) unless the stream was flipped on
//! the GPU, and PNGs are written top-down, as image viewers show them.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use image::{ImageBuffer, Luma};

use crate::format::Format;

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

/// Writes a frame as a PNG with rows top-down: RGBA for rgba8 and bgra8 (swizzled back), RGB for
/// rgb8, 8-bit grey for gray8, and 16-bit grey for depth32f (depth × 65535).
pub fn save_frame_png(
    path: &Path,
    width_px: u32,
    height_px: u32,
    format: Format,
    pixels: &[u8],
    top_down: bool,
) -> Result<()> {
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
    let stride_bytes = (width_px * format.bytes_per_pixel()) as usize;
    let rows = if top_down {
        pixels.to_vec()
    } else {
        flip_rows(pixels, stride_bytes)
    };
    let write_error = || format!("cannot write {}", path.display());
    match format {
        Format::Rgba8 => {
            image::save_buffer(path, &rows, width_px, height_px, image::ColorType::Rgba8)
        }
        Format::Bgra8 => {
            let rgba: Vec<u8> = rows
                .chunks_exact(4)
                .flat_map(|p| [p[2], p[1], p[0], p[3]])
                .collect();
            image::save_buffer(path, &rgba, width_px, height_px, image::ColorType::Rgba8)
        }
        Format::Rgb8 => {
            image::save_buffer(path, &rows, width_px, height_px, image::ColorType::Rgb8)
        }
        Format::Gray8 => image::save_buffer(path, &rows, width_px, height_px, image::ColorType::L8),
        Format::Depth32f => {
            let depth: Vec<u16> = rows
                .chunks_exact(4)
                .map(|b| {
                    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (d.clamp(0.0, 1.0) * 65535.0).round() as u16
                })
                .collect();
            let image: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_raw(width_px, height_px, depth)
                    .context("depth buffer does not match its size")?;
            image.save(path)
        }
    }
    .with_context(write_error)
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
