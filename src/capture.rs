//! PNG files from frames: frames arrive bottom-up (OpenGL order), PNGs are written top-down, as
//! image viewers show them.

use std::path::Path;

use anyhow::{Context, Result, ensure};

/// Rows reversed: bottom-up RGBA8 (as read back) into top-down (as stored in image files).
pub fn flip_rows(rgba: &[u8], width_px: u32, height_px: u32) -> Vec<u8> {
    let stride_bytes = width_px as usize * 4;
    assert_eq!(rgba.len(), stride_bytes * height_px as usize);
    rgba.chunks_exact(stride_bytes)
        .rev()
        .flatten()
        .copied()
        .collect()
}

/// Writes a bottom-up RGBA8 frame as a top-down PNG.
pub fn save_png(path: &Path, width_px: u32, height_px: u32, bottom_up: &[u8]) -> Result<()> {
    ensure!(
        bottom_up.len() == width_px as usize * height_px as usize * 4,
        "{} bytes is not a {width_px}x{height_px} RGBA8 frame",
        bottom_up.len()
    );
    let top_down = flip_rows(bottom_up, width_px, height_px);
    image::save_buffer(
        path,
        &top_down,
        width_px,
        height_px,
        image::ColorType::Rgba8,
    )
    .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::flip_rows;

    #[test]
    fn flip_reverses_rows_and_keeps_pixels() {
        // 2x3 image, each row a distinct value.
        let rows: Vec<u8> = [1u8, 2, 3].iter().flat_map(|&r| [r; 8]).collect();
        let flipped = flip_rows(&rows, 2, 3);
        assert_eq!(&flipped[..8], &[3; 8]);
        assert_eq!(&flipped[16..], &[1; 8]);
        assert_eq!(flip_rows(&flipped, 2, 3), rows);
    }
}
