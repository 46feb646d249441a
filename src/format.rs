//! Pixel formats a frame can be delivered in. This is the vocabulary shared by the command line,
//! the wire headers and the readback; how each is produced on the GPU lives in `gl/`.

/// What each pixel of a frame is. Rows are always tightly packed (no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// 4 bytes: red, green, blue, alpha (what Blender's ImageRender gives).
    #[default]
    Rgba8,
    /// 4 bytes: blue, green, red, alpha (what many video and vision APIs want).
    Bgra8,
    /// 3 bytes: red, green, blue.
    Rgb8,
    /// 1 byte: luma (Rec. 709 weights), computed on the GPU.
    Gray8,
    /// 4 bytes: window-space depth in [0, 1] as a little-endian f32; the background is 1.0
    /// (Blender's ImageRender with depth=True).
    Depth32f,
}

impl Format {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            Format::Rgba8 | Format::Bgra8 | Format::Depth32f => 4,
            Format::Rgb8 => 3,
            Format::Gray8 => 1,
        }
    }

    /// Bytes of one frame of `width_px` × `height_px`, or `None` where that is more than a u64
    /// holds (65536 × 65536 × 4 fits; u32::MAX × u32::MAX × 4 does not).
    pub fn checked_frame_bytes(self, width_px: u32, height_px: u32) -> Option<u64> {
        (width_px as u64)
            .checked_mul(height_px as u64)?
            .checked_mul(self.bytes_per_pixel() as u64)
    }

    /// Bytes of one frame of `width_px` × `height_px`, saturating at `u64::MAX`: sizes that come
    /// from another process must never wrap round to a small length that a short payload
    /// matches. Where the exact figure matters, [`Format::checked_frame_bytes`].
    pub fn frame_bytes(self, width_px: u32, height_px: u32) -> u64 {
        self.checked_frame_bytes(width_px, height_px)
            .unwrap_or(u64::MAX)
    }

    /// The code in the `glstream` wire header.
    pub fn code(self) -> u32 {
        match self {
            Format::Rgba8 => 1,
            Format::Bgra8 => 2,
            Format::Rgb8 => 3,
            Format::Gray8 => 4,
            Format::Depth32f => 5,
        }
    }

    /// The format with this wire code.
    pub fn from_code(code: u32) -> Option<Format> {
        [
            Format::Rgba8,
            Format::Bgra8,
            Format::Rgb8,
            Format::Gray8,
            Format::Depth32f,
        ]
        .into_iter()
        .find(|f| f.code() == code)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Rgba8 => "rgba8",
            Format::Bgra8 => "bgra8",
            Format::Rgb8 => "rgb8",
            Format::Gray8 => "gray8",
            Format::Depth32f => "depth32f",
        }
    }
}

/// What every frame of a stream looks like: size, pixel format and row order. The one
/// description of a frame's pixels: headers add an index and a time to it
/// (`stream::protocol::FrameInfo`), PNGs are written from it (`capture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    /// Width in pixels.
    pub width_px: u32,
    /// Height in pixels.
    pub height_px: u32,
    /// Pixel format of the payload.
    pub format: Format,
    /// Rows top-down (`--flip`) instead of OpenGL's bottom-up.
    pub top_down: bool,
}

impl FrameShape {
    /// Bytes per row (a u32 width times at most 4 bytes always fits a u64).
    pub fn stride_bytes(&self) -> u64 {
        self.width_px as u64 * self.format.bytes_per_pixel() as u64
    }

    /// Bytes of one frame, saturating at `u64::MAX` (see [`Format::frame_bytes`]).
    pub fn frame_bytes(&self) -> u64 {
        self.format.frame_bytes(self.width_px, self.height_px)
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn sizes_and_codes() {
        assert_eq!(Format::Rgb8.frame_bytes(3, 2), 18);
        assert_eq!(Format::Gray8.frame_bytes(3, 2), 6);
        assert_eq!(Format::Depth32f.frame_bytes(3, 2), 24);
        for f in [
            Format::Rgba8,
            Format::Bgra8,
            Format::Rgb8,
            Format::Gray8,
            Format::Depth32f,
        ] {
            assert_eq!(Format::from_code(f.code()), Some(f));
        }
        assert_eq!(Format::from_code(0), None);
        // Sizes from another process never wrap round.
        assert_eq!(Format::Rgba8.checked_frame_bytes(u32::MAX, u32::MAX), None);
        assert_eq!(Format::Rgba8.frame_bytes(u32::MAX, u32::MAX), u64::MAX);
        assert_eq!(
            Format::Rgba8.checked_frame_bytes(65536, 65536),
            Some(1 << 34)
        );
    }
}
