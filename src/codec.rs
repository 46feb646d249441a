//! The codecs of `--compress`: what each strip of a compressed frame is, byte for byte, and how
//! it is encoded and decoded. The wire layout around them (the glstream v2 header and its strip
//! table) is in `stream::protocol`; the stage that encodes each frame once for every consumer is
//! `stream::encode`.
//!
//! A compressed frame is cut into horizontal strips of `rows_per_strip` rows (the last may be
//! shorter), in the frame's row order. Each strip is an independent unit of its codec, so strips
//! are encoded, and can be decoded, in parallel; decoding every strip of a lossless codec and
//! concatenating them gives back the raw payload byte for byte.
//!
//! - `qoi`: a complete QOI image of `width × rows` pixels, 4 channels (rgba8, bgra8: the bytes in
//!   the format's order) or 3 (rgb8).
//! - `zstd`: one zstd frame, content size set, of the strip's raw bytes.
//! - `lz4`: one LZ4 block (no frame header) of the strip's raw bytes; its decoded size is
//!   `rows × stride`.
//! - `jpeg`: a baseline JPEG of `width × rows` pixels, 3 components from RGB (rgba8, bgra8, rgb8;
//!   alpha is not carried and decodes as 255) or 1 (gray8). Lossy.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::format::Format;

/// A codec, as the glstream v2 header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Quite OK Image format: lossless, fast, good on smooth and flat content.
    Qoi,
    /// Zstandard of the raw bytes: lossless, any format; levels trade speed for size.
    Zstd,
    /// LZ4 block of the raw bytes: lossless, any format, the fastest and the least compact.
    Lz4,
    /// Baseline JPEG: lossy, colour and grey formats.
    Jpeg,
}

/// Every codec, in wire-code order.
pub const CODECS: [Codec; 4] = [Codec::Qoi, Codec::Zstd, Codec::Lz4, Codec::Jpeg];

/// The most strips a frame may be cut into (a bound on the header's strip table).
pub const MAX_STRIPS: u32 = 1024;

/// Strips are a whole number of these rows (but the last), so that JPEG's 16-row blocks never
/// straddle two strips.
const STRIP_ROW_MULTIPLE: u32 = 16;

impl Codec {
    /// The code in the glstream v2 header (0 is "none").
    pub fn code(self) -> u32 {
        match self {
            Codec::Qoi => 1,
            Codec::Zstd => 2,
            Codec::Lz4 => 3,
            Codec::Jpeg => 4,
        }
    }

    /// The codec with this wire code.
    pub fn from_code(code: u32) -> Option<Codec> {
        CODECS.into_iter().find(|c| c.code() == code)
    }

    /// The name `--compress` takes.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Qoi => "qoi",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
            Codec::Jpeg => "jpeg",
        }
    }

    /// Whether decoding gives back the exact bytes.
    pub fn is_lossless(self) -> bool {
        self != Codec::Jpeg
    }

    /// Whether this codec can carry frames of `format`.
    pub fn carries(self, format: Format) -> bool {
        match self {
            Codec::Qoi => matches!(format, Format::Rgba8 | Format::Bgra8 | Format::Rgb8),
            Codec::Zstd | Codec::Lz4 => true,
            Codec::Jpeg => format != Format::Depth32f,
        }
    }

    /// The one-line reason this codec cannot carry `format`, if it cannot.
    pub fn check_format(self, format: Format) -> Result<(), CodecError> {
        if self.carries(format) {
            Ok(())
        } else {
            Err(CodecError::Format {
                codec: self.name(),
                format: format.name(),
            })
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--compress` asks for: a codec and, for zstd and jpeg, a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compress {
    /// The codec.
    pub codec: Codec,
    /// zstd's level (1 to 19, default 1) or JPEG's quality (1 to 100, default 80); 0 otherwise.
    pub level: i32,
}

impl Compress {
    /// `codec` at its default level.
    pub fn new(codec: Codec) -> Self {
        let level = match codec {
            Codec::Zstd => 1,
            Codec::Jpeg => 80,
            Codec::Qoi | Codec::Lz4 => 0,
        };
        Self { codec, level }
    }
}

impl fmt::Display for Compress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.codec {
            Codec::Zstd | Codec::Jpeg => write!(f, "{}:{}", self.codec, self.level),
            Codec::Qoi | Codec::Lz4 => write!(f, "{}", self.codec),
        }
    }
}

impl FromStr for Compress {
    type Err = String;

    /// `qoi`, `lz4`, `zstd[:LEVEL]` (1 to 19) or `jpeg[:QUALITY]` (1 to 100).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, level) = match s.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (s, None),
        };
        let codec = CODECS
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!("unknown codec {name:?}: use qoi, zstd[:LEVEL], lz4 or jpeg[:QUALITY]")
            })?;
        let mut compress = Compress::new(codec);
        if let Some(level) = level {
            let range = match codec {
                Codec::Zstd => 1..=19,
                Codec::Jpeg => 1..=100,
                Codec::Qoi | Codec::Lz4 => {
                    return Err(format!("{codec} takes no level (got {s:?})"));
                }
            };
            compress.level = level
                .parse()
                .ok()
                .filter(|l| range.contains(l))
                .ok_or_else(|| {
                    format!(
                        "{codec}'s {} must be {} to {} (got {level:?})",
                        if codec == Codec::Jpeg {
                            "quality"
                        } else {
                            "level"
                        },
                        range.start(),
                        range.end()
                    )
                })?;
        }
        Ok(compress)
    }
}

/// How a frame is cut into strips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows in every strip but the last.
    pub rows_per_strip: u32,
    /// How many strips: `ceil(height / rows_per_strip)`.
    pub strips: u32,
}

impl Layout {
    /// About `parts` strips of a frame `height_px` rows high (a multiple of 16 rows each, at
    /// most [`MAX_STRIPS`]).
    pub fn new(height_px: u32, parts: usize) -> Self {
        let parts = (parts.max(1) as u32).min(MAX_STRIPS);
        let rows = height_px.div_ceil(parts).max(1);
        let rows_per_strip = rows
            .div_ceil(STRIP_ROW_MULTIPLE)
            .saturating_mul(STRIP_ROW_MULTIPLE)
            .max(height_px.div_ceil(MAX_STRIPS));
        Self::checked(height_px, rows_per_strip).expect("a layout within the bounds")
    }

    /// The layout with `rows_per_strip`, if its strip count is 1 to [`MAX_STRIPS`].
    pub fn checked(height_px: u32, rows_per_strip: u32) -> Option<Self> {
        if rows_per_strip == 0 || height_px == 0 {
            return None;
        }
        let strips = height_px.div_ceil(rows_per_strip);
        (1..=MAX_STRIPS).contains(&strips).then_some(Self {
            rows_per_strip,
            strips,
        })
    }

    /// The rows of strip `index` of a frame `height_px` high.
    pub fn rows(&self, index: u32, height_px: u32) -> u32 {
        let start = index * self.rows_per_strip;
        self.rows_per_strip.min(height_px.saturating_sub(start))
    }
}

/// Why a strip cannot be encoded or decoded, or a codec not used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The codec cannot carry the format.
    #[error("--compress {codec} cannot carry {format} frames{}", hint(codec))]
    Format {
        /// The codec's name.
        codec: &'static str,
        /// The format's name.
        format: &'static str,
    },
    /// The encoder failed.
    #[error("{codec} cannot encode a strip: {why}")]
    Encode {
        /// The codec's name.
        codec: &'static str,
        /// Why.
        why: String,
    },
    /// A strip that is not what the header says.
    #[error("strip {strip}: {why}")]
    Decode {
        /// Which strip.
        strip: u32,
        /// Why.
        why: String,
    },
}

fn hint(codec: &str) -> &'static str {
    match codec {
        "qoi" => " (qoi carries rgba8, bgra8 and rgb8; zstd and lz4 carry every format)",
        _ => " (zstd and lz4 carry every format)",
    }
}

thread_local! {
    /// One zstd compression context per worker thread, kept between frames (making one takes
    /// longer than compressing a small strip), with the level it was made for.
    static ZSTD_ENCODER: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per worker thread.
    static ZSTD_DECODER: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Encodes one strip of `rows` rows of `width_px` pixels of `format` (`src`, exactly
/// `rows × stride` bytes) into `dst`, which is cleared first; its capacity is reused.
pub fn encode_strip(
    compress: Compress,
    width_px: u32,
    rows: u32,
    format: Format,
    src: &[u8],
    dst: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let codec = compress.codec;
    let fail = |why: String| CodecError::Encode {
        codec: codec.name(),
        why,
    };
    dst.clear();
    codec.check_format(format)?;
    match codec {
        Codec::Qoi => {
            let encoder =
                qoi::Encoder::new(src, width_px, rows).map_err(|e| fail(e.to_string()))?;
            dst.resize(encoder.required_buf_len(), 0);
            let len = encoder
                .encode_to_buf(&mut dst[..])
                .map_err(|e| fail(e.to_string()))?;
            dst.truncate(len);
        }
        Codec::Zstd => {
            dst.reserve(zstd::zstd_safe::compress_bound(src.len()));
            ZSTD_ENCODER.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell
                    .as_ref()
                    .is_none_or(|(level, _)| *level != compress.level)
                {
                    let mut compressor = zstd::bulk::Compressor::new(compress.level)
                        .map_err(|e| fail(e.to_string()))?;
                    compressor
                        .include_contentsize(true)
                        .map_err(|e| fail(e.to_string()))?;
                    *cell = Some((compress.level, compressor));
                }
                let (_, compressor) = cell.as_mut().expect("made above");
                compressor
                    .compress_to_buffer(src, dst)
                    .map(|_| ())
                    .map_err(|e| fail(e.to_string()))
            })?;
        }
        Codec::Lz4 => {
            dst.resize(lz4_flex::block::get_maximum_output_size(src.len()), 0);
            let len = lz4_flex::block::compress_into(src, &mut dst[..])
                .map_err(|e| fail(e.to_string()))?;
            dst.truncate(len);
        }
        Codec::Jpeg => {
            use jpeg_encoder::ColorType;
            let color = match format {
                Format::Rgba8 => ColorType::Rgba,
                Format::Bgra8 => ColorType::Bgra,
                Format::Rgb8 => ColorType::Rgb,
                Format::Gray8 => ColorType::Luma,
                Format::Depth32f => return Err(codec.check_format(format).unwrap_err()),
            };
            let (width, height) = (
                u16::try_from(width_px)
                    .map_err(|_| fail(format!("width {width_px} over 65535")))?,
                u16::try_from(rows).map_err(|_| fail(format!("{rows} rows over 65535")))?,
            );
            let encoder = jpeg_encoder::Encoder::new(&mut *dst, compress.level as u8);
            encoder
                .encode(src, width, height, color)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

/// Decodes strip `strip` (`src`) of `rows` rows of `width_px` pixels of `format` into `dst`,
/// which is exactly `rows × stride` bytes; anything else than exactly that is an error.
pub fn decode_strip(
    codec: Codec,
    strip: u32,
    width_px: u32,
    rows: u32,
    format: Format,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), CodecError> {
    let fail = |why: String| CodecError::Decode { strip, why };
    codec
        .check_format(format)
        .map_err(|e| fail(e.to_string()))?;
    match codec {
        Codec::Qoi => {
            let header = qoi::decode_header(src).map_err(|e| fail(format!("qoi: {e}")))?;
            let channels = format.bytes_per_pixel() as u8;
            if header.width != width_px
                || header.height != rows
                || header.channels.as_u8() != channels
            {
                return Err(fail(format!(
                    "qoi image is {}x{} with {} channels, expected {width_px}x{rows} with {channels}",
                    header.width,
                    header.height,
                    header.channels.as_u8()
                )));
            }
            qoi::decode_to_buf(&mut *dst, src).map_err(|e| fail(format!("qoi: {e}")))?;
        }
        Codec::Zstd => {
            // The content size a zstd frame claims is checked against the strip before any
            // decoding: the output is the caller's slice, never allocated from the claim.
            match zstd::zstd_safe::get_frame_content_size(src) {
                Ok(Some(size)) if size == dst.len() as u64 => {}
                Ok(Some(size)) => {
                    return Err(fail(format!(
                        "zstd frame holds {size} bytes, the strip is {}",
                        dst.len()
                    )));
                }
                _ => return Err(fail("not a zstd frame with its content size".into())),
            }
            let written = ZSTD_DECODER.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell.is_none() {
                    *cell = Some(
                        zstd::bulk::Decompressor::new().map_err(|e| fail(format!("zstd: {e}")))?,
                    );
                }
                cell.as_mut()
                    .expect("made above")
                    .decompress_to_buffer(src, &mut *dst)
                    .map_err(|e| fail(format!("zstd: {e}")))
            })?;
            if written != dst.len() {
                return Err(fail(format!("zstd gave {written} of {} bytes", dst.len())));
            }
        }
        Codec::Lz4 => {
            let written = lz4_flex::block::decompress_into(src, dst)
                .map_err(|e| fail(format!("lz4: {e}")))?;
            if written != dst.len() {
                return Err(fail(format!("lz4 gave {written} of {} bytes", dst.len())));
            }
        }
        Codec::Jpeg => decode_jpeg(src, width_px, rows, format, dst).map_err(fail)?,
    }
    Ok(())
}

/// Decodes a whole compressed frame: `payload` holds the strips of `layout` back to back, of
/// the lengths `strip_lens` gives, and `out` (exactly `height × stride` bytes) receives the
/// frame's rows. Strips are decoded in parallel on rayon's current pool.
#[allow(clippy::too_many_arguments)]
pub fn decode_frame(
    codec: Codec,
    layout: Layout,
    width_px: u32,
    height_px: u32,
    format: Format,
    strip_lens: impl Iterator<Item = u32>,
    payload: &[u8],
    out: &mut [u8],
) -> Result<(), CodecError> {
    use rayon::prelude::*;
    let stride = width_px as usize * format.bytes_per_pixel() as usize;
    let mut strips = Vec::with_capacity(layout.strips as usize);
    let mut at = 0usize;
    for len in strip_lens {
        let end = at + len as usize;
        let Some(strip) = payload.get(at..end) else {
            return Err(CodecError::Decode {
                strip: strips.len() as u32,
                why: format!("runs past the payload's {} bytes", payload.len()),
            });
        };
        strips.push(strip);
        at = end;
    }
    if strips.len() != layout.strips as usize || at != payload.len() {
        return Err(CodecError::Decode {
            strip: 0,
            why: format!(
                "{} strips of {at} bytes for a layout of {} and a payload of {}",
                strips.len(),
                layout.strips,
                payload.len()
            ),
        });
    }
    if out.len() != stride * height_px as usize {
        return Err(CodecError::Decode {
            strip: 0,
            why: format!(
                "{} bytes for a frame of {}",
                out.len(),
                stride * height_px as usize
            ),
        });
    }
    out.par_chunks_mut(layout.rows_per_strip as usize * stride)
        .zip(strips.par_iter())
        .enumerate()
        .try_for_each(|(i, (rows_out, strip))| {
            let rows = layout.rows(i as u32, height_px);
            decode_strip(codec, i as u32, width_px, rows, format, strip, rows_out)
        })
}

fn decode_jpeg(
    src: &[u8],
    width_px: u32,
    rows: u32,
    format: Format,
    dst: &mut [u8],
) -> Result<(), String> {
    use image::ImageDecoder;
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(src))
        .map_err(|e| format!("jpeg: {e}"))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    let channels = match color {
        image::ColorType::L8 => 1,
        image::ColorType::Rgb8 => 3,
        other => return Err(format!("jpeg of {other:?} pixels")),
    };
    let wanted = if format == Format::Gray8 { 1 } else { 3 };
    if (width, height) != (width_px, rows) || channels != wanted {
        return Err(format!(
            "jpeg is {width}x{height} with {channels} components, expected {width_px}x{rows} with {wanted}"
        ));
    }
    if format == Format::Gray8 || format == Format::Rgb8 {
        return decoder.read_image(dst).map_err(|e| format!("jpeg: {e}"));
    }
    // Four bytes a pixel: decode the RGB into the last three quarters of the strip, then spread
    // it out from the front. Pixel i's four bytes end at 4i + 4, at or before where pixel i + 1's
    // three source bytes begin (pixels + 3i + 3), so nothing is overwritten before it is read.
    let pixels = (width_px * rows) as usize;
    let offset = pixels;
    decoder
        .read_image(&mut dst[offset..])
        .map_err(|e| format!("jpeg: {e}"))?;
    let bgra = format == Format::Bgra8;
    for i in 0..pixels {
        let s = offset + i * 3;
        let (r, g, b) = (dst[s], dst[s + 1], dst[s + 2]);
        let d = i * 4;
        if bgra {
            dst[d..d + 4].copy_from_slice(&[b, g, r, 255]);
        } else {
            dst[d..d + 4].copy_from_slice(&[r, g, b, 255]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth gradient with some noise: compressible, but not trivially.
    fn pixels(width: u32, rows: u32, format: Format) -> Vec<u8> {
        let bpp = format.bytes_per_pixel();
        (0..width * rows * bpp)
            .map(|i| {
                let px = i / bpp;
                let (x, y) = (px % width, px / width);
                (x + 2 * y + (i % bpp) * 40 + (i * 7919 % 13)) as u8
            })
            .collect()
    }

    #[test]
    fn every_lossless_codec_round_trips_every_format_it_carries() {
        for codec in [Codec::Qoi, Codec::Zstd, Codec::Lz4] {
            for format in [
                Format::Rgba8,
                Format::Bgra8,
                Format::Rgb8,
                Format::Gray8,
                Format::Depth32f,
            ] {
                let (width, rows) = (37, 19);
                let src = pixels(width, rows, format);
                let mut encoded = Vec::new();
                let result = encode_strip(
                    Compress::new(codec),
                    width,
                    rows,
                    format,
                    &src,
                    &mut encoded,
                );
                if !codec.carries(format) {
                    assert!(result.is_err(), "{codec} {format:?}");
                    continue;
                }
                result.unwrap();
                let mut decoded = vec![0u8; src.len()];
                decode_strip(codec, 0, width, rows, format, &encoded, &mut decoded).unwrap();
                assert_eq!(decoded, src, "{codec} {format:?}");
            }
        }
    }

    #[test]
    fn jpeg_round_trips_close_and_restores_opaque_alpha() {
        for format in [Format::Rgba8, Format::Bgra8, Format::Rgb8, Format::Gray8] {
            let (width, rows) = (64, 32);
            let bpp = format.bytes_per_pixel() as usize;
            let src: Vec<u8> = (0..(width * rows) as usize * bpp)
                .map(|i| {
                    if bpp == 4 && i % 4 == 3 {
                        255
                    } else {
                        ((i / bpp) % 64 * 3) as u8
                    }
                })
                .collect();
            let mut encoded = Vec::new();
            encode_strip(
                Compress::new(Codec::Jpeg),
                width,
                rows,
                format,
                &src,
                &mut encoded,
            )
            .unwrap();
            let mut decoded = vec![0u8; src.len()];
            decode_strip(Codec::Jpeg, 0, width, rows, format, &encoded, &mut decoded).unwrap();
            let worst = src
                .iter()
                .zip(&decoded)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(worst < 40, "{format:?}: off by {worst}");
        }
    }

    #[test]
    fn a_strip_of_another_size_is_refused_not_misread() {
        let src = pixels(16, 8, Format::Rgba8);
        for codec in [Codec::Qoi, Codec::Zstd, Codec::Lz4, Codec::Jpeg] {
            let mut encoded = Vec::new();
            encode_strip(
                Compress::new(codec),
                16,
                8,
                Format::Rgba8,
                &src,
                &mut encoded,
            )
            .unwrap();
            let mut short = vec![0u8; 16 * 7 * 4];
            assert!(
                decode_strip(codec, 3, 16, 7, Format::Rgba8, &encoded, &mut short).is_err(),
                "{codec}"
            );
            let mut garbage = encoded.clone();
            garbage.truncate(encoded.len() / 2);
            let mut out = vec![0u8; src.len()];
            assert!(
                decode_strip(codec, 0, 16, 8, Format::Rgba8, &garbage, &mut out).is_err()
                    || codec == Codec::Jpeg
            );
        }
    }

    #[test]
    fn compress_parses_names_and_levels() {
        assert_eq!("qoi".parse(), Ok(Compress::new(Codec::Qoi)));
        assert_eq!(
            "zstd:5".parse(),
            Ok(Compress {
                codec: Codec::Zstd,
                level: 5
            })
        );
        assert_eq!("jpeg".parse::<Compress>().unwrap().level, 80);
        assert!("zstd:0".parse::<Compress>().is_err());
        assert!("jpeg:101".parse::<Compress>().is_err());
        assert!("lz4:3".parse::<Compress>().is_err());
        assert!("png".parse::<Compress>().is_err());
    }

    #[test]
    fn layouts_cover_the_frame_in_whole_blocks_of_rows() {
        let layout = Layout::new(1080, 2);
        assert_eq!(layout.rows_per_strip, 544);
        assert_eq!(layout.strips, 2);
        assert_eq!(layout.rows(1, 1080), 536);
        let one = Layout::new(7, 16);
        assert_eq!((one.rows_per_strip, one.strips), (16, 1));
        let many = Layout::new(65535, 100_000);
        assert!(many.strips <= MAX_STRIPS);
        assert_eq!(Layout::checked(100, 0), None);
        assert_eq!(Layout::checked(5000, 1), None);
    }
}
