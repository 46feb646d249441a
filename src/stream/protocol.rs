//! Wire headers, byte for byte what a Blender game-engine producer sends.
//!
//! Blender's producer writes, per frame, `struct.pack("L", len(data)) + struct.pack("H", height)
//! + struct.pack("H", width) + data` in native byte order. On 64-bit Linux and macOS "L" is 8
//! bytes; on Windows it is 4, hence [`HeaderMode::Blender32`]. `raw` sends no header at all, for
//! ffmpeg's rawvideo demuxer and GStreamer's rawvideoparse. Everything is little-endian, written
//! with explicit `to_le_bytes`, and the encoded size is asserted against the size constant.

use thiserror::Error;

/// The longest header any mode writes.
pub const MAX_HEADER_LEN: usize = 12;
/// `--header blender`: u64 length, u16 height, u16 width.
pub const BLENDER_HEADER_LEN: usize = 12;
/// `--header blender32`: u32 length, u16 height, u16 width.
pub const BLENDER32_HEADER_LEN: usize = 8;

/// Which header precedes each frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeaderMode {
    /// 12 bytes: u64 LE payload length, u16 LE height, u16 LE width (Python "L" on 64-bit Linux).
    Blender,
    /// 8 bytes: u32 LE payload length, u16 LE height, u16 LE width (Python "L" on Windows).
    Blender32,
    /// No header: the bare pixels, for ffmpeg `-f rawvideo` or GStreamer `rawvideoparse`.
    Raw,
}

impl HeaderMode {
    /// Bytes of header this mode writes before every payload.
    pub fn len(self) -> usize {
        match self {
            HeaderMode::Blender => BLENDER_HEADER_LEN,
            HeaderMode::Blender32 => BLENDER32_HEADER_LEN,
            HeaderMode::Raw => 0,
        }
    }

    /// Checks that frames of this size can be described by this header.
    pub fn check_size(self, width_px: u32, height_px: u32) -> Result<(), ProtocolError> {
        let info = FrameInfo {
            width_px,
            height_px,
            payload_len: width_px as u64 * height_px as u64 * 4,
        };
        let mut scratch = [0u8; MAX_HEADER_LEN];
        encode(self, &info, &mut scratch).map(|_| ())
    }
}

/// What a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Width in pixels.
    pub width_px: u32,
    /// Height in pixels.
    pub height_px: u32,
    /// Bytes of payload that follow the header.
    pub payload_len: u64,
}

/// Why a header cannot be written or read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Width or height does not fit the header's u16 field.
    #[error(
        "{what} {value} does not fit the {mode:?} header's 16-bit field (at most 65535); use --header raw"
    )]
    DimensionTooLarge {
        /// "width" or "height".
        what: &'static str,
        /// The value.
        value: u32,
        /// The header mode.
        mode: HeaderMode,
    },
    /// The payload length does not fit a u32 (blender32 only).
    #[error(
        "a frame of {0} bytes does not fit the blender32 header's 32-bit length; use --header blender"
    )]
    LengthTooLarge(u64),
    /// Fewer bytes than a header were given to the decoder.
    #[error("truncated header: need {need} bytes, got {got}")]
    Truncated {
        /// Bytes a header needs.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The length field disagrees with width × height × 4.
    #[error(
        "header says {payload_len} bytes for {width_px}x{height_px} RGBA8 (expected {expected})"
    )]
    LengthMismatch {
        /// Length field.
        payload_len: u64,
        /// Width field.
        width_px: u32,
        /// Height field.
        height_px: u32,
        /// width × height × 4.
        expected: u64,
    },
    /// Raw mode has no header to decode.
    #[error("raw mode has no header")]
    NoHeader,
}

fn dimension(mode: HeaderMode, what: &'static str, value: u32) -> Result<u16, ProtocolError> {
    u16::try_from(value).map_err(|_| ProtocolError::DimensionTooLarge { what, value, mode })
}

/// Writes the header for `info` into `out` and returns its length (0 for raw).
pub fn encode(
    mode: HeaderMode,
    info: &FrameInfo,
    out: &mut [u8; MAX_HEADER_LEN],
) -> Result<usize, ProtocolError> {
    if mode == HeaderMode::Raw {
        return Ok(0);
    }
    let height = dimension(mode, "height", info.height_px)?.to_le_bytes();
    let width = dimension(mode, "width", info.width_px)?.to_le_bytes();
    let written = match mode {
        HeaderMode::Blender => {
            out[0..8].copy_from_slice(&info.payload_len.to_le_bytes());
            out[8..10].copy_from_slice(&height);
            out[10..12].copy_from_slice(&width);
            12
        }
        HeaderMode::Blender32 => {
            let len = u32::try_from(info.payload_len)
                .map_err(|_| ProtocolError::LengthTooLarge(info.payload_len))?;
            out[0..4].copy_from_slice(&len.to_le_bytes());
            out[4..6].copy_from_slice(&height);
            out[6..8].copy_from_slice(&width);
            8
        }
        HeaderMode::Raw => unreachable!("handled above"),
    };
    assert_eq!(written, mode.len());
    Ok(written)
}

/// Reads a header from the start of `bytes`, checking the length before anything else and the
/// length field against the dimensions after.
pub fn decode(mode: HeaderMode, bytes: &[u8]) -> Result<FrameInfo, ProtocolError> {
    let need = mode.len();
    if mode == HeaderMode::Raw {
        return Err(ProtocolError::NoHeader);
    }
    if bytes.len() < need {
        return Err(ProtocolError::Truncated {
            need,
            got: bytes.len(),
        });
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as u32;
    let info = match mode {
        HeaderMode::Blender => FrameInfo {
            payload_len: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            height_px: u16_at(8),
            width_px: u16_at(10),
        },
        HeaderMode::Blender32 => FrameInfo {
            payload_len: u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as u64,
            height_px: u16_at(4),
            width_px: u16_at(6),
        },
        HeaderMode::Raw => unreachable!("handled above"),
    };
    let expected = info.width_px as u64 * info.height_px as u64 * 4;
    if info.payload_len != expected {
        return Err(ProtocolError::LengthMismatch {
            payload_len: info.payload_len,
            width_px: info.width_px,
            height_px: info.height_px,
            expected,
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(mode: HeaderMode, width_px: u32, height_px: u32) -> Vec<u8> {
        let info = FrameInfo {
            width_px,
            height_px,
            payload_len: width_px as u64 * height_px as u64 * 4,
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = encode(mode, &info, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn blender_header_matches_python_struct_layout() {
        // python3 -c 'import struct; print(list(struct.pack("L", 800*600*4)
        //   + struct.pack("H", 600) + struct.pack("H", 800)))'  on 64-bit Linux:
        let python = [0x00, 0x4c, 0x1d, 0x00, 0, 0, 0, 0, 0x58, 0x02, 0x20, 0x03];
        assert_eq!(encoded(HeaderMode::Blender, 800, 600), python);
    }

    #[test]
    fn blender32_header_matches_python_struct_layout_on_windows() {
        // struct.pack("<I", 1920*1080*4) + struct.pack("<H", 1080) + struct.pack("<H", 1920):
        let python = [0x00, 0x90, 0x7e, 0x00, 0x38, 0x04, 0x80, 0x07];
        assert_eq!(encoded(HeaderMode::Blender32, 1920, 1080), python);
    }

    #[test]
    fn raw_header_is_empty() {
        assert!(encoded(HeaderMode::Raw, 800, 600).is_empty());
        assert_eq!(decode(HeaderMode::Raw, &[]), Err(ProtocolError::NoHeader));
    }

    #[test]
    fn headers_round_trip() {
        for mode in [HeaderMode::Blender, HeaderMode::Blender32] {
            for (w, h) in [(1, 1), (800, 600), (65535, 3), (4096, 4096)] {
                let info = decode(mode, &encoded(mode, w, h)).unwrap();
                assert_eq!((info.width_px, info.height_px), (w, h));
                assert_eq!(info.payload_len, w as u64 * h as u64 * 4);
            }
        }
    }

    #[test]
    fn oversized_dimensions_are_refused() {
        assert!(matches!(
            HeaderMode::Blender.check_size(70000, 10),
            Err(ProtocolError::DimensionTooLarge {
                what: "width",
                value: 70000,
                ..
            })
        ));
        assert!(matches!(
            HeaderMode::Blender32.check_size(10, 65536),
            Err(ProtocolError::DimensionTooLarge { what: "height", .. })
        ));
        assert_eq!(
            HeaderMode::Blender32.check_size(65535, 65535),
            Err(ProtocolError::LengthTooLarge(65535 * 65535 * 4))
        );
        assert!(HeaderMode::Raw.check_size(70000, 70000).is_ok());
    }

    #[test]
    fn decode_rejects_short_and_inconsistent_input() {
        assert_eq!(
            decode(HeaderMode::Blender, &[0; 11]),
            Err(ProtocolError::Truncated { need: 12, got: 11 })
        );
        let mut bad = encoded(HeaderMode::Blender, 4, 4);
        bad[0] += 1;
        assert!(matches!(
            decode(HeaderMode::Blender, &bad),
            Err(ProtocolError::LengthMismatch { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_takes_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32)) {
            for mode in [HeaderMode::Blender, HeaderMode::Blender32, HeaderMode::Raw] {
                if let Ok(info) = decode(mode, &bytes) {
                    proptest::prop_assert_eq!(
                        info.payload_len,
                        info.width_px as u64 * info.height_px as u64 * 4
                    );
                }
            }
        }

        #[test]
        fn truncated_headers_are_reported(width in 0u32..=65535, height in 0u32..=65535, keep in 0usize..12) {
            let mut out = [0u8; MAX_HEADER_LEN];
            let info = FrameInfo { width_px: width, height_px: height, payload_len: width as u64 * height as u64 * 4 };
            let n = encode(HeaderMode::Blender, &info, &mut out).unwrap();
            proptest::prop_assert_eq!(decode(HeaderMode::Blender, &out[..n]), Ok(info));
            proptest::prop_assert_eq!(
                decode(HeaderMode::Blender, &out[..keep]),
                Err(ProtocolError::Truncated { need: 12, got: keep })
            );
        }
    }
}
