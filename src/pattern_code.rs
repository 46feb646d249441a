//! The `pattern` scene's layout and its decoder: pure integer geometry with no GL, so the scene's
//! shader, [`decode_pattern`] (used by `recv`, which must not depend on the renderer) and the
//! integration tests agree on every pixel.
//!
//! Layout, in OpenGL pixel coordinates (`x` from the left, `y` from the bottom):
//! - The image is cut into [`COLUMNS`] columns: column `c` holds the pixels with
//!   `x * COLUMNS / width == c` (integer division).
//! - The bottom `grid_height = height * 3 / 4` rows are an 8 × 8 grid of black or white cells;
//!   grid row `r` (0 at the bottom) holds `y * ROWS / grid_height == r`. Cells are numbered in
//!   reading order, top-left first: `cell = (ROWS - 1 - r) * COLUMNS + c`.
//! - Cells 0..32 are the frame index modulo 2³², most significant bit first (white is 1); cells
//!   32..64 are the same bits inverted, so any single mis-read cell makes the frame invalid.
//! - The rows above the grid are colour bars, one per column: [`BARS`], left to right.
//!
//! Every cell and bar is at least 8 × 3 pixels at the smallest decodable size
//! ([`MIN_WIDTH_PX`] × [`MIN_HEIGHT_PX`]), and colours are exactly 0 or 255, so the frame survives
//! any rasterizer; the decoder reads one pixel at the centre of each cell and bar.

/// Columns of cells and of colour bars.
pub const COLUMNS: u32 = 8;
/// Rows of cells.
pub const ROWS: u32 = 8;
/// Bits of the frame index carried (the rest of the cells carry their inverse).
pub const INDEX_BITS: u32 = 32;
/// Smallest width [`decode_pattern`] accepts.
pub const MIN_WIDTH_PX: u32 = 64;
/// Smallest height [`decode_pattern`] accepts.
pub const MIN_HEIGHT_PX: u32 = 32;

/// The colour bars, left to right: white, yellow, cyan, green, magenta, red, blue, black.
pub const BARS: [[u8; 3]; COLUMNS as usize] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

/// A channel this far from 0 or 255 is not a pattern colour (lossy codecs stay well inside).
const CHANNEL_TOLERANCE: u8 = 64;

/// Rows (from the bottom) that hold the cell grid; the bars are above them.
pub fn grid_height_px(height_px: u32) -> u32 {
    height_px * 3 / 4
}

/// The pixel at the centre of part `index` of `count` equal integer parts of `length` pixels:
/// `centre * count / length == index` holds whenever `length >= 2 * count`.
fn centre(index: u32, count: u32, length: u32) -> u32 {
    (2 * index + 1) * length / (2 * count)
}

/// Reads the frame index back from a `pattern` frame: RGBA8, `width_px * height_px * 4` bytes,
/// rows bottom-up as OpenGL and the stream deliver them (flip a top-down PNG first). Returns the
/// index modulo 2³², or `None` when the buffer has the wrong length, is smaller than
/// [`MIN_WIDTH_PX`] × [`MIN_HEIGHT_PX`], or is not a valid pattern frame (a bar of the wrong
/// colour, a cell neither black nor white, or a cell that disagrees with its inverted copy).
// Kept free of GL: `glstream recv --verify-pattern` and the tests (which include this file by
// path) decode with it.
pub fn decode_pattern(rgba_bottom_up: &[u8], width_px: u32, height_px: u32) -> Option<u64> {
    if width_px < MIN_WIDTH_PX || height_px < MIN_HEIGHT_PX {
        return None;
    }
    let expected_len = (width_px as usize)
        .checked_mul(height_px as usize)?
        .checked_mul(4)?;
    if rgba_bottom_up.len() != expected_len {
        return None;
    }
    let pixel = |x: u32, y: u32| -> [u8; 3] {
        let at = (y as usize * width_px as usize + x as usize) * 4;
        [
            rgba_bottom_up[at],
            rgba_bottom_up[at + 1],
            rgba_bottom_up[at + 2],
        ]
    };
    let near = |value: u8, target: u8| value.abs_diff(target) < CHANNEL_TOLERANCE;
    let grid_height = grid_height_px(height_px);

    let bar_y = grid_height + (height_px - grid_height) / 2;
    for (column, bar) in (0..COLUMNS).zip(BARS) {
        let seen = pixel(centre(column, COLUMNS, width_px), bar_y);
        if !seen.iter().zip(bar).all(|(&s, b)| near(s, b)) {
            return None;
        }
    }

    let mut white = [false; (COLUMNS * ROWS) as usize];
    for (cell, is_white) in (0..COLUMNS * ROWS).zip(white.iter_mut()) {
        let column = cell % COLUMNS;
        let row_from_bottom = ROWS - 1 - cell / COLUMNS;
        let seen = pixel(
            centre(column, COLUMNS, width_px),
            centre(row_from_bottom, ROWS, grid_height),
        );
        *is_white = if seen.iter().all(|&s| near(s, 255)) {
            true
        } else if seen.iter().all(|&s| near(s, 0)) {
            false
        } else {
            return None;
        };
    }
    let (index_cells, inverted_cells) = white.split_at(INDEX_BITS as usize);
    let mut index = 0u64;
    for (&bit, &inverted) in index_cells.iter().zip(inverted_cells) {
        if bit == inverted {
            return None;
        }
        index = (index << 1) | u64::from(bit);
    }
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `cell` (0..64) is white in frame `frame_index`, as shaders/pattern.frag says.
    fn cell_is_white(frame_index: u64, cell: u32) -> bool {
        let bit = (frame_index >> (INDEX_BITS - 1 - cell % INDEX_BITS)) & 1 == 1;
        if cell < INDEX_BITS { bit } else { !bit }
    }

    /// A CPU copy of shaders/pattern.frag, bottom-up RGBA8.
    fn synthesize(frame_index: u64, width_px: u32, height_px: u32) -> Vec<u8> {
        let grid_height = grid_height_px(height_px);
        let mut out = Vec::with_capacity((width_px * height_px * 4) as usize);
        for y in 0..height_px {
            for x in 0..width_px {
                let column = x * COLUMNS / width_px;
                let rgb = if y >= grid_height {
                    BARS[column as usize]
                } else {
                    let row_from_top = ROWS - 1 - y * ROWS / grid_height;
                    let v = if cell_is_white(frame_index, row_from_top * COLUMNS + column) {
                        255
                    } else {
                        0
                    };
                    [v, v, v]
                };
                out.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
            }
        }
        out
    }

    #[test]
    fn round_trips_at_many_sizes() {
        for (w, h) in [
            (64, 32),
            (65, 33),
            (98, 66),
            (160, 120),
            (1920, 1080),
            (64, 1000),
        ] {
            for frame in [0, 1, 2, 90, 255, 256, 65_535, 0xdead_beef, u32::MAX as u64] {
                let buffer = synthesize(frame, w, h);
                assert_eq!(
                    decode_pattern(&buffer, w, h),
                    Some(frame),
                    "{w}x{h} frame {frame}"
                );
            }
        }
    }

    #[test]
    fn index_wraps_at_two_to_the_32() {
        let buffer = synthesize((1 << 32) + 7, 98, 66);
        assert_eq!(decode_pattern(&buffer, 98, 66), Some(7));
    }

    #[test]
    fn survives_small_colour_noise() {
        let mut buffer = synthesize(12_345, 98, 66);
        for (i, byte) in buffer.iter_mut().enumerate() {
            let noise = (i % 7) as u8 * 5;
            *byte = if *byte > 127 {
                byte.saturating_sub(noise)
            } else {
                byte.saturating_add(noise)
            };
        }
        assert_eq!(decode_pattern(&buffer, 98, 66), Some(12_345));
    }

    #[test]
    fn a_top_down_buffer_is_refused() {
        let (w, h) = (160, 120);
        let buffer = synthesize(42, w, h);
        let flipped: Vec<u8> = buffer
            .chunks(w as usize * 4)
            .rev()
            .flatten()
            .copied()
            .collect();
        assert_eq!(decode_pattern(&flipped, w, h), None);
    }

    #[test]
    fn a_flipped_cell_is_detected() {
        let (w, h) = (160, 120);
        for cell in [0, 17, 31, 32, 63] {
            let mut buffer = synthesize(90, w, h);
            let column = cell % COLUMNS;
            let row_from_bottom = ROWS - 1 - cell / COLUMNS;
            let grid_height = grid_height_px(h);
            // Invert the whole cell.
            for y in 0..grid_height {
                for x in 0..w {
                    if x * COLUMNS / w == column && y * ROWS / grid_height == row_from_bottom {
                        let at = ((y * w + x) * 4) as usize;
                        for byte in &mut buffer[at..at + 3] {
                            *byte = 255 - *byte;
                        }
                    }
                }
            }
            assert_eq!(decode_pattern(&buffer, w, h), None, "cell {cell}");
        }
    }

    #[test]
    fn grey_cells_wrong_bars_and_bad_sizes_are_refused() {
        let (w, h) = (98, 66);
        assert_eq!(decode_pattern(&vec![128; (w * h * 4) as usize], w, h), None);
        assert_eq!(decode_pattern(&vec![0; (w * h * 4) as usize], w, h), None);
        let mut buffer = synthesize(3, w, h);
        // Paint the top row band black: the bars no longer match.
        let start = (grid_height_px(h) * w * 4) as usize;
        buffer[start..].iter_mut().for_each(|b| *b = 0);
        assert_eq!(decode_pattern(&buffer, w, h), None);

        let buffer = synthesize(3, w, h);
        assert_eq!(decode_pattern(&buffer[1..], w, h), None, "short buffer");
        assert_eq!(decode_pattern(&buffer, w + 1, h), None, "wrong width");
        assert_eq!(
            decode_pattern(&synthesize(3, 63, 40), 63, 40),
            None,
            "too narrow"
        );
        assert_eq!(
            decode_pattern(&synthesize(3, 80, 31), 80, 31),
            None,
            "too short"
        );
        assert_eq!(decode_pattern(&[], u32::MAX, u32::MAX), None);
    }
}
