//! Wire headers: byte for byte what a Blender game-engine producer sends, and a richer,
//! versioned header for new consumers.
//!
//! Blender's producer writes, per frame, `struct.pack("L", len(data)) + struct.pack("H", height)
//! + struct.pack("H", width) + data` in native byte order. On 64-bit Linux and macOS "L" is 8
//! bytes; on Windows it is 4, hence [`HeaderMode::Blender32`]. `raw` sends no header at all, for
//! ffmpeg's rawvideo demuxer and GStreamer's rawvideoparse. [`HeaderMode::Glstream`] carries
//! everything a consumer might want (layout in [`GLSTREAM_HEADER_LEN`]'s documentation).
//!
//! Everything is little-endian, written with explicit `to_le_bytes`, the encoded size is asserted
//! against the size constant, and decoding checks the length before anything else.

use thiserror::Error;

use crate::codec::{Codec, Layout, MAX_STRIPS};
use crate::format::{Format, FrameShape};

/// `--header blender`: u64 length, u16 height, u16 width.
pub const BLENDER_HEADER_LEN: usize = 12;
/// `--header blender32`: u32 length, u16 height, u16 width.
pub const BLENDER32_HEADER_LEN: usize = 8;
/// `--header glstream`, version 1, 56 bytes, all little-endian:
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | `[u8; 4]` | magic `GLST` |
/// | 4 | u16 | version (1) |
/// | 6 | u16 | header length in bytes (56) |
/// | 8 | u32 | width in pixels |
/// | 12 | u32 | height in pixels |
/// | 16 | u32 | format: 1 rgba8, 2 bgra8, 3 rgb8, 4 gray8, 5 depth32f |
/// | 20 | u32 | flags: bit 0 set = rows top-down (`--flip`), else bottom-up |
/// | 24 | u32 | stride: bytes per row (rows are tightly packed) |
/// | 28 | u32 | reserved, 0 |
/// | 32 | u64 | frame index (restarts at 0 when a client finds the server idle) |
/// | 40 | u64 | render timestamp, nanoseconds since the Unix epoch |
/// | 48 | u64 | payload length in bytes (stride × height) |
pub const GLSTREAM_HEADER_LEN: usize = 56;
/// The longest header any mode writes for an uncompressed frame.
pub const MAX_HEADER_LEN: usize = GLSTREAM_HEADER_LEN;
/// First four bytes of a `glstream` header.
pub const GLSTREAM_MAGIC: [u8; 4] = *b"GLST";
/// The `glstream` header version of uncompressed frames.
pub const GLSTREAM_VERSION: u16 = 1;
/// The `glstream` header version of compressed frames (`--compress`), 80 bytes and a strip
/// table, all little-endian; its first 56 bytes keep version 1's layout, but for the codec at
/// 28 and the length at 48 being the encoded bytes that follow:
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | `[u8; 4]` | magic `GLST` |
/// | 4 | u16 | version (2) |
/// | 6 | u16 | header length in bytes: 80 + 4 × strips |
/// | 8 | u32 | width in pixels |
/// | 12 | u32 | height in pixels |
/// | 16 | u32 | format (as version 1) |
/// | 20 | u32 | flags: bit 0 set = rows top-down |
/// | 24 | u32 | stride of the decoded rows, bytes |
/// | 28 | u32 | codec: 1 qoi, 2 zstd, 3 lz4, 4 jpeg (`crate::codec`) |
/// | 32 | u64 | frame index |
/// | 40 | u64 | render timestamp, nanoseconds since the Unix epoch |
/// | 48 | u64 | payload length: encoded bytes after the header, the strips' sum |
/// | 56 | u64 | raw length: stride × height, the decoded size |
/// | 64 | u64 | request id (0: none) |
/// | 72 | u32 | strips, 1 to 1024 |
/// | 76 | u32 | rows per strip (strips = ceil(height / rows per strip)) |
/// | 80 | u32 × strips | encoded length of each strip |
pub const GLSTREAM_V2_VERSION: u16 = 2;
/// The fixed part of a version 2 header, before its strip table.
pub const GLSTREAM_V2_FIXED_LEN: usize = 80;
/// The longest version 2 header: a full strip table.
pub const GLSTREAM_V2_MAX_LEN: usize = GLSTREAM_V2_FIXED_LEN + 4 * MAX_STRIPS as usize;
/// The largest payload a consumer accepts from another process, checked before anything is
/// allocated: more than any render target a driver allows (16384² × 4 bytes), so a header that
/// claims more can only be garbage.
pub const MAX_FRAME_BYTES: u64 = 1 << 30;
/// Flag bit: rows are top-down.
const FLAG_TOP_DOWN: u32 = 1;

/// Which header precedes each frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// 12 bytes: u64 LE payload length, u16 LE height, u16 LE width (Python "L" on 64-bit Linux).
    Blender,
    /// 8 bytes: u32 LE payload length, u16 LE height, u16 LE width (Python "L" on Windows).
    Blender32,
    /// No header: the bare pixels, for ffmpeg `-f rawvideo` or GStreamer `rawvideoparse`.
    Raw,
    /// 56 bytes: magic, version, size, format, flags, stride, frame index, timestamp, length.
    Glstream,
}

impl HeaderMode {
    /// The name `--header` takes.
    pub fn name(self) -> &'static str {
        match self {
            HeaderMode::Blender => "blender",
            HeaderMode::Blender32 => "blender32",
            HeaderMode::Raw => "raw",
            HeaderMode::Glstream => "glstream",
        }
    }

    /// Bytes of header this mode writes before every payload.
    pub fn header_len(self) -> usize {
        match self {
            HeaderMode::Blender => BLENDER_HEADER_LEN,
            HeaderMode::Blender32 => BLENDER32_HEADER_LEN,
            HeaderMode::Raw => 0,
            HeaderMode::Glstream => GLSTREAM_HEADER_LEN,
        }
    }

    /// Checks that frames of this size and format can be described by this header.
    pub fn check_size(
        self,
        width_px: u32,
        height_px: u32,
        format: Format,
    ) -> Result<(), ProtocolError> {
        let shape = FrameShape {
            width_px,
            height_px,
            format,
            top_down: false,
        };
        let info = FrameInfo::new(shape, 0, 0);
        check_frame_bytes(width_px, height_px, format)?;
        let mut scratch = [0u8; MAX_HEADER_LEN];
        encode(self, &info, &mut scratch).map(|_| ())
    }
}

/// Checks that a frame of this size and format has a byte count at all (one that fits a `u64`),
/// whatever header describes it.
pub fn check_frame_bytes(
    width_px: u32,
    height_px: u32,
    format: Format,
) -> Result<(), ProtocolError> {
    match format.checked_frame_bytes(width_px, height_px) {
        Some(_) => Ok(()),
        None => Err(ProtocolError::FrameTooLarge {
            width_px,
            height_px,
            format: format.name(),
        }),
    }
}

/// Everything a header may describe about one frame: its shape, index and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Size, format and row order.
    pub shape: FrameShape,
    /// The scene's frame index.
    pub frame_index: u64,
    /// When the frame was rendered, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The control request it answers (0: none); only a version 2 header carries it.
    pub request_id: u64,
}

impl FrameInfo {
    /// Frame `frame_index` of `shape`, rendered at `timestamp_ns`, answering no request.
    pub fn new(shape: FrameShape, frame_index: u64, timestamp_ns: u64) -> Self {
        Self {
            shape,
            frame_index,
            timestamp_ns,
            request_id: 0,
        }
    }

    /// The same frame, answering request `request_id`.
    pub fn answering(self, request_id: u64) -> Self {
        Self { request_id, ..self }
    }

    /// Bytes per row.
    pub fn stride_bytes(&self) -> u64 {
        self.shape.stride_bytes()
    }

    /// Bytes of payload after the header, saturating at `u64::MAX` (which
    /// [`HeaderMode::check_size`] refuses before any frame is made).
    pub fn payload_len(&self) -> u64 {
        self.shape.frame_bytes()
    }
}

/// Why a header cannot be written or read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Width or height does not fit the header's u16 field.
    #[error(
        "{what} {value} does not fit the {mode:?} header's 16-bit field (at most 65535); use --header raw or glstream"
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
    /// Width × height × bytes per pixel is more than any length field (or memory) can hold.
    #[error(
        "{width_px}x{height_px} {format} frames would be over 2^64 bytes each; no header can describe them"
    )]
    FrameTooLarge {
        /// Width in pixels.
        width_px: u32,
        /// Height in pixels.
        height_px: u32,
        /// The format's name.
        format: &'static str,
    },
    /// A row longer than the glstream header's 32-bit stride field.
    #[error(
        "a row of {0} bytes does not fit the glstream header's 32-bit stride field (at most 4294967295); use --header raw"
    )]
    StrideTooLarge(u64),
    /// Fewer bytes than a header were given to the decoder.
    #[error("truncated header: need {need} bytes, got {got}")]
    Truncated {
        /// Bytes a header needs.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The length field disagrees with the dimensions and format.
    #[error(
        "header says {payload_len} bytes for {width_px}x{height_px} {format} (expected {expected})"
    )]
    LengthMismatch {
        /// Length field.
        payload_len: u64,
        /// Width field.
        width_px: u32,
        /// Height field.
        height_px: u32,
        /// The format's name.
        format: &'static str,
        /// width × height × bytes per pixel.
        expected: u64,
    },
    /// A `glstream` header that does not start with `GLST`.
    #[error("not a glstream header (magic {0:02x?}, expected \"GLST\")")]
    BadMagic([u8; 4]),
    /// A `glstream` header of a version this build does not read.
    #[error("glstream header version {0} is not supported (this build reads versions 1 and 2)")]
    UnsupportedVersion(u16),
    /// A `glstream` header whose size field is not 56 (version 1) or 80 + 4 × strips (2).
    #[error(
        "glstream header says it is {0} bytes long (version 1 is 56, version 2 80 + 4 per strip)"
    )]
    BadHeaderLength(u16),
    /// A version 2 header naming a codec this build does not know, or one that cannot carry
    /// the frame's format.
    #[error("glstream header names codec {code}, which cannot carry {format} frames or is unknown")]
    BadCodec {
        /// The codec field.
        code: u32,
        /// The format's name.
        format: &'static str,
    },
    /// A version 2 header whose strip layout does not cover the frame.
    #[error("glstream header's strip layout does not fit: {0}")]
    BadStrips(String),
    /// A `glstream` header with an unknown format code.
    #[error("unknown pixel format code {0}")]
    UnknownFormat(u32),
    /// A `glstream` header whose stride is not width × bytes per pixel.
    #[error("stride {stride} is not {width_px} pixels of {format}")]
    BadStride {
        /// Stride field.
        stride: u32,
        /// Width field.
        width_px: u32,
        /// The format's name.
        format: &'static str,
    },
    /// A header describing an empty frame (width or height 0): no producer sends one.
    #[error("header says {width_px}x{height_px}: an empty frame")]
    EmptyFrame {
        /// Width field.
        width_px: u32,
        /// Height field.
        height_px: u32,
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
    let payload_len = info.payload_len();
    let written = match mode {
        HeaderMode::Raw => 0,
        HeaderMode::Blender => {
            let height = dimension(mode, "height", info.shape.height_px)?;
            let width = dimension(mode, "width", info.shape.width_px)?;
            out[0..8].copy_from_slice(&payload_len.to_le_bytes());
            out[8..10].copy_from_slice(&height.to_le_bytes());
            out[10..12].copy_from_slice(&width.to_le_bytes());
            12
        }
        HeaderMode::Blender32 => {
            let height = dimension(mode, "height", info.shape.height_px)?;
            let width = dimension(mode, "width", info.shape.width_px)?;
            let len = u32::try_from(payload_len)
                .map_err(|_| ProtocolError::LengthTooLarge(payload_len))?;
            out[0..4].copy_from_slice(&len.to_le_bytes());
            out[4..6].copy_from_slice(&height.to_le_bytes());
            out[6..8].copy_from_slice(&width.to_le_bytes());
            8
        }
        HeaderMode::Glstream => {
            // A stride over u32 would need a row of more than 4 GiB: no GL target is that wide.
            let stride = u32::try_from(info.stride_bytes())
                .map_err(|_| ProtocolError::StrideTooLarge(info.stride_bytes()))?;
            let flags = if info.shape.top_down {
                FLAG_TOP_DOWN
            } else {
                0
            };
            out[0..4].copy_from_slice(&GLSTREAM_MAGIC);
            out[4..6].copy_from_slice(&GLSTREAM_VERSION.to_le_bytes());
            out[6..8].copy_from_slice(&(GLSTREAM_HEADER_LEN as u16).to_le_bytes());
            out[8..12].copy_from_slice(&info.shape.width_px.to_le_bytes());
            out[12..16].copy_from_slice(&info.shape.height_px.to_le_bytes());
            out[16..20].copy_from_slice(&info.shape.format.code().to_le_bytes());
            out[20..24].copy_from_slice(&flags.to_le_bytes());
            out[24..28].copy_from_slice(&stride.to_le_bytes());
            out[28..32].copy_from_slice(&0u32.to_le_bytes());
            out[32..40].copy_from_slice(&info.frame_index.to_le_bytes());
            out[40..48].copy_from_slice(&info.timestamp_ns.to_le_bytes());
            out[48..56].copy_from_slice(&payload_len.to_le_bytes());
            GLSTREAM_HEADER_LEN
        }
    };
    assert_eq!(written, mode.header_len());
    Ok(written)
}

/// What a header told. The Blender headers carry no format, orientation, index or time: the
/// format is the one the consumer expects, and the rest are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Width in pixels.
    pub width_px: u32,
    /// Height in pixels.
    pub height_px: u32,
    /// Pixel format (from the header, or the expected one).
    pub format: Format,
    /// Payload bytes that follow.
    pub payload_len: u64,
    /// Rows top-down, when the header says.
    pub top_down: Option<bool>,
    /// The frame index, when the header says.
    pub frame_index: Option<u64>,
    /// The render timestamp, when the header says.
    pub timestamp_ns: Option<u64>,
    /// How the payload is compressed, when it is (a version 2 header); the strip lengths are
    /// in the header's table ([`strip_lengths`]).
    pub encoding: Option<Encoding>,
    /// The request a frame answers (version 2; 0: none).
    pub request_id: u64,
}

/// A compressed frame's codec and strips, as a version 2 header gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The codec of every strip.
    pub codec: Codec,
    /// How the frame is cut into strips.
    pub layout: Layout,
}

impl Decoded {
    /// Bytes of the frame once decoded: width × height × bytes per pixel.
    pub fn raw_len(&self) -> u64 {
        self.format.frame_bytes(self.width_px, self.height_px)
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads a header from the start of `bytes`. `expected` is the format a Blender or raw stream is
/// known to carry; a glstream header names its own.
pub fn decode(mode: HeaderMode, bytes: &[u8], expected: Format) -> Result<Decoded, ProtocolError> {
    let need = mode.header_len();
    if mode == HeaderMode::Raw {
        return Err(ProtocolError::NoHeader);
    }
    if bytes.len() < need {
        return Err(ProtocolError::Truncated {
            need,
            got: bytes.len(),
        });
    }
    let decoded = match mode {
        HeaderMode::Blender | HeaderMode::Blender32 => {
            let (payload_len, at) = if mode == HeaderMode::Blender {
                (u64_at(bytes, 0), 8)
            } else {
                (u32_at(bytes, 0) as u64, 4)
            };
            Decoded {
                payload_len,
                height_px: u16_at(bytes, at) as u32,
                width_px: u16_at(bytes, at + 2) as u32,
                format: expected,
                top_down: None,
                frame_index: None,
                timestamp_ns: None,
                encoding: None,
                request_id: 0,
            }
        }
        HeaderMode::Glstream => {
            let header_len = glstream_header_len(bytes)?;
            if bytes.len() < header_len {
                return Err(ProtocolError::Truncated {
                    need: header_len,
                    got: bytes.len(),
                });
            }
            let code = u32_at(bytes, 16);
            let format = Format::from_code(code).ok_or(ProtocolError::UnknownFormat(code))?;
            let width_px = u32_at(bytes, 8);
            let stride = u32_at(bytes, 24);
            if stride as u64 != width_px as u64 * format.bytes_per_pixel() as u64 {
                return Err(ProtocolError::BadStride {
                    stride,
                    width_px,
                    format: format.name(),
                });
            }
            Decoded {
                width_px,
                height_px: u32_at(bytes, 12),
                format,
                payload_len: u64_at(bytes, 48),
                top_down: Some(u32_at(bytes, 20) & FLAG_TOP_DOWN != 0),
                frame_index: Some(u64_at(bytes, 32)),
                timestamp_ns: Some(u64_at(bytes, 40)),
                encoding: None,
                request_id: 0,
            }
        }
        HeaderMode::Raw => unreachable!("handled above"),
    };

    if decoded.width_px == 0 || decoded.height_px == 0 {
        return Err(ProtocolError::EmptyFrame {
            width_px: decoded.width_px,
            height_px: decoded.height_px,
        });
    }
    if mode == HeaderMode::Glstream && u16_at(bytes, 4) == GLSTREAM_V2_VERSION {
        return decode_v2(bytes, decoded);
    }
    let expected_len = decoded
        .format
        .frame_bytes(decoded.width_px, decoded.height_px);
    if decoded.payload_len != expected_len {
        return Err(ProtocolError::LengthMismatch {
            payload_len: decoded.payload_len,
            width_px: decoded.width_px,
            height_px: decoded.height_px,
            format: decoded.format.name(),
            expected: expected_len,
        });
    }
    Ok(decoded)
}

/// The whole length of the `glstream` header that starts `first` (at least its first 56
/// bytes, the part every version shares): 56 for version 1, 80 + 4 × strips for version 2.
/// Checks the magic, the version and that the length is one the version can have, so a reader
/// knows how many more bytes to read before it reads them.
pub fn glstream_header_len(first: &[u8]) -> Result<usize, ProtocolError> {
    if first.len() < GLSTREAM_HEADER_LEN {
        return Err(ProtocolError::Truncated {
            need: GLSTREAM_HEADER_LEN,
            got: first.len(),
        });
    }
    let magic = [first[0], first[1], first[2], first[3]];
    if magic != GLSTREAM_MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    let header_len = u16_at(first, 6);
    let len = header_len as usize;
    match u16_at(first, 4) {
        GLSTREAM_VERSION if len == GLSTREAM_HEADER_LEN => Ok(len),
        GLSTREAM_V2_VERSION
            if len > GLSTREAM_V2_FIXED_LEN
                && len <= GLSTREAM_V2_MAX_LEN
                && (len - GLSTREAM_V2_FIXED_LEN).is_multiple_of(4) =>
        {
            Ok(len)
        }
        GLSTREAM_VERSION | GLSTREAM_V2_VERSION => Err(ProtocolError::BadHeaderLength(header_len)),
        version => Err(ProtocolError::UnsupportedVersion(version)),
    }
}

/// The rest of a version 2 header, after the fields version 1 shares (`shared`, whose
/// `payload_len` is the encoded length).
fn decode_v2(bytes: &[u8], shared: Decoded) -> Result<Decoded, ProtocolError> {
    let bad = |why: String| ProtocolError::BadStrips(why);
    let code = u32_at(bytes, 28);
    // Code 0: uncompressed (a stream whose frames carry request ids).
    let codec = match code {
        0 => None,
        _ => Some(
            Codec::from_code(code)
                .filter(|c| c.carries(shared.format))
                .ok_or(ProtocolError::BadCodec {
                    code,
                    format: shared.format.name(),
                })?,
        ),
    };
    let raw_len = u64_at(bytes, 56);
    if raw_len != shared.raw_len() {
        return Err(ProtocolError::LengthMismatch {
            payload_len: raw_len,
            width_px: shared.width_px,
            height_px: shared.height_px,
            format: shared.format.name(),
            expected: shared.raw_len(),
        });
    }
    let strips = u32_at(bytes, 72);
    let rows_per_strip = u32_at(bytes, 76);
    let layout = Layout::checked(shared.height_px, rows_per_strip)
        .filter(|l| l.strips == strips)
        .ok_or_else(|| {
            bad(format!(
                "{strips} strips of {rows_per_strip} rows for {} rows",
                shared.height_px
            ))
        })?;
    let header_len = u16_at(bytes, 6) as usize;
    if header_len != GLSTREAM_V2_FIXED_LEN + 4 * strips as usize {
        return Err(ProtocolError::BadHeaderLength(header_len as u16));
    }
    let sum: u64 = strip_lengths(bytes).map(u64::from).sum();
    if sum != shared.payload_len {
        return Err(bad(format!(
            "strips of {sum} bytes in all, payload length {}",
            shared.payload_len
        )));
    }
    if codec.is_none() && shared.payload_len != raw_len {
        return Err(ProtocolError::LengthMismatch {
            payload_len: shared.payload_len,
            width_px: shared.width_px,
            height_px: shared.height_px,
            format: shared.format.name(),
            expected: raw_len,
        });
    }
    Ok(Decoded {
        encoding: codec.map(|codec| Encoding { codec, layout }),
        request_id: u64_at(bytes, 64),
        ..shared
    })
}

/// Writes the version 2 header of an uncompressed frame (codec 0, one strip): what a stream
/// whose frames answer control requests sends, so that each frame carries its request id.
pub fn encode_tagged(info: &FrameInfo, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let raw = info.payload_len();
    let len = u32::try_from(raw).map_err(|_| {
        ProtocolError::BadStrips(format!(
            "an uncompressed frame of {raw} bytes does not fit one strip's 32-bit length"
        ))
    })?;
    let layout = Layout::checked(info.shape.height_px, info.shape.height_px.max(1))
        .ok_or_else(|| ProtocolError::BadStrips("an empty frame".into()))?;
    encode_v2(info, None, layout, &[len], out)
}

/// The encoded length of each strip in a version 2 header (`header`, whole); nothing for a
/// version 1 header.
pub fn strip_lengths(header: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let table = if header.len() > GLSTREAM_V2_FIXED_LEN && u16_at(header, 4) == GLSTREAM_V2_VERSION
    {
        &header[GLSTREAM_V2_FIXED_LEN..]
    } else {
        &[]
    };
    table
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes the version 2 header of a frame into `out` (cleared first): `info` as version 1 has
/// it and its request id, `codec` (`None`: uncompressed), `layout` and each strip's encoded
/// length.
pub fn encode_v2(
    info: &FrameInfo,
    codec: Option<Codec>,
    layout: Layout,
    strip_lens: &[u32],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let stride = u32::try_from(info.stride_bytes())
        .map_err(|_| ProtocolError::StrideTooLarge(info.stride_bytes()))?;
    if strip_lens.len() != layout.strips as usize || layout.strips > MAX_STRIPS {
        return Err(ProtocolError::BadStrips(format!(
            "{} strip lengths for {} strips",
            strip_lens.len(),
            layout.strips
        )));
    }
    let header_len = GLSTREAM_V2_FIXED_LEN + 4 * strip_lens.len();
    let payload_len: u64 = strip_lens.iter().map(|&l| l as u64).sum();
    let flags = if info.shape.top_down {
        FLAG_TOP_DOWN
    } else {
        0
    };
    out.clear();
    out.extend_from_slice(&GLSTREAM_MAGIC);
    out.extend_from_slice(&GLSTREAM_V2_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(&info.shape.width_px.to_le_bytes());
    out.extend_from_slice(&info.shape.height_px.to_le_bytes());
    out.extend_from_slice(&info.shape.format.code().to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&stride.to_le_bytes());
    out.extend_from_slice(&codec.map_or(0, Codec::code).to_le_bytes());
    out.extend_from_slice(&info.frame_index.to_le_bytes());
    out.extend_from_slice(&info.timestamp_ns.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&info.payload_len().to_le_bytes());
    out.extend_from_slice(&info.request_id.to_le_bytes());
    out.extend_from_slice(&layout.strips.to_le_bytes());
    out.extend_from_slice(&layout.rows_per_strip.to_le_bytes());
    for len in strip_lens {
        out.extend_from_slice(&len.to_le_bytes());
    }
    assert_eq!(out.len(), header_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width_px: u32, height_px: u32, format: Format) -> FrameInfo {
        FrameInfo {
            shape: FrameShape {
                width_px,
                height_px,
                format,
                top_down: false,
            },
            frame_index: 0,
            timestamp_ns: 0,
            request_id: 0,
        }
    }

    fn encoded(mode: HeaderMode, info: &FrameInfo) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = encode(mode, info, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn blender_header_matches_python_struct_layout() {
        // python3 -c 'import struct; print(list(struct.pack("L", 800*600*4)
        //   + struct.pack("H", 600) + struct.pack("H", 800)))'  on 64-bit Linux:
        let python = [0x00, 0x4c, 0x1d, 0x00, 0, 0, 0, 0, 0x58, 0x02, 0x20, 0x03];
        assert_eq!(
            encoded(HeaderMode::Blender, &info(800, 600, Format::Rgba8)),
            python
        );
    }

    #[test]
    fn blender32_header_matches_python_struct_layout_on_windows() {
        // struct.pack("<I", 1920*1080*4) + struct.pack("<H", 1080) + struct.pack("<H", 1920):
        let python = [0x00, 0x90, 0x7e, 0x00, 0x38, 0x04, 0x80, 0x07];
        assert_eq!(
            encoded(HeaderMode::Blender32, &info(1920, 1080, Format::Rgba8)),
            python
        );
    }

    #[test]
    fn blender_length_follows_the_format() {
        // One byte per pixel: 800*600 = 480000 = 0x0753_00.
        let header = encoded(HeaderMode::Blender, &info(800, 600, Format::Gray8));
        assert_eq!(&header[..8], &480_000u64.to_le_bytes());
        let decoded = decode(HeaderMode::Blender, &header, Format::Gray8).unwrap();
        assert_eq!(decoded.payload_len, 480_000);
        assert!(decode(HeaderMode::Blender, &header, Format::Rgba8).is_err());
    }

    #[test]
    fn raw_header_is_empty() {
        assert!(encoded(HeaderMode::Raw, &info(800, 600, Format::Rgba8)).is_empty());
        assert_eq!(
            decode(HeaderMode::Raw, &[], Format::Rgba8),
            Err(ProtocolError::NoHeader)
        );
    }

    #[test]
    fn glstream_header_layout_is_documented_bytes() {
        let frame = FrameInfo {
            shape: FrameShape {
                width_px: 3,
                height_px: 2,
                format: Format::Rgb8,
                top_down: true,
            },
            frame_index: 7,
            timestamp_ns: 0x0102_0304_0506_0708,
            request_id: 0,
        };
        let h = encoded(HeaderMode::Glstream, &frame);
        assert_eq!(h.len(), 56);
        assert_eq!(&h[0..4], b"GLST");
        assert_eq!(&h[4..8], &[1, 0, 56, 0]);
        assert_eq!(&h[8..16], &[3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&h[16..24], &[3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&h[24..32], &[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&h[32..40], &7u64.to_le_bytes());
        assert_eq!(&h[40..48], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&h[48..56], &18u64.to_le_bytes());
    }

    #[test]
    fn glstream_header_round_trips_every_format() {
        for format in [
            Format::Rgba8,
            Format::Bgra8,
            Format::Rgb8,
            Format::Gray8,
            Format::Depth32f,
        ] {
            let frame = FrameInfo {
                shape: FrameShape {
                    width_px: 70_000,
                    height_px: 5,
                    format,
                    top_down: format == Format::Gray8,
                },
                frame_index: u64::MAX,
                timestamp_ns: 1_700_000_000_000_000_000,
                request_id: 0,
            };
            let d = decode(
                HeaderMode::Glstream,
                &encoded(HeaderMode::Glstream, &frame),
                Format::Rgba8,
            )
            .unwrap();
            assert_eq!((d.width_px, d.height_px, d.format), (70_000, 5, format));
            assert_eq!(d.payload_len, frame.payload_len());
            assert_eq!(d.top_down, Some(frame.shape.top_down));
            assert_eq!(d.frame_index, Some(u64::MAX));
            assert_eq!(d.timestamp_ns, Some(frame.timestamp_ns));
        }
    }

    #[test]
    fn glstream_header_rejects_bad_magic_version_and_lengths() {
        let good = encoded(HeaderMode::Glstream, &info(4, 4, Format::Rgba8));
        let decode_with = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            patch(&mut bytes);
            decode(HeaderMode::Glstream, &bytes, Format::Rgba8)
        };
        assert_eq!(
            decode_with(&|b| b[0] = b'X'),
            Err(ProtocolError::BadMagic(*b"XLST"))
        );
        assert_eq!(
            decode_with(&|b| b[4] = 3),
            Err(ProtocolError::UnsupportedVersion(3))
        );
        // Version 2 is longer than 56 bytes: a 56-byte one is not a version 2 header.
        assert_eq!(
            decode_with(&|b| b[4] = 2),
            Err(ProtocolError::BadHeaderLength(56))
        );
        assert_eq!(
            decode_with(&|b| b[6] = 64),
            Err(ProtocolError::BadHeaderLength(64))
        );
        assert_eq!(
            decode_with(&|b| b[16] = 9),
            Err(ProtocolError::UnknownFormat(9))
        );
        assert!(matches!(
            decode_with(&|b| b[24] = 15),
            Err(ProtocolError::BadStride { .. })
        ));
        assert!(matches!(
            decode_with(&|b| b[48] = 65),
            Err(ProtocolError::LengthMismatch { .. })
        ));
        assert_eq!(
            decode(HeaderMode::Glstream, &good[..55], Format::Rgba8),
            Err(ProtocolError::Truncated { need: 56, got: 55 })
        );
    }

    #[test]
    fn headers_round_trip() {
        for mode in [HeaderMode::Blender, HeaderMode::Blender32] {
            for (w, h) in [(1, 1), (800, 600), (65535, 3), (4096, 4096)] {
                let d = decode(
                    mode,
                    &encoded(mode, &info(w, h, Format::Rgba8)),
                    Format::Rgba8,
                )
                .unwrap();
                assert_eq!((d.width_px, d.height_px), (w, h));
                assert_eq!(d.payload_len, w as u64 * h as u64 * 4);
            }
        }
    }

    #[test]
    fn oversized_dimensions_are_refused() {
        assert!(matches!(
            HeaderMode::Blender.check_size(70000, 10, Format::Rgba8),
            Err(ProtocolError::DimensionTooLarge {
                what: "width",
                value: 70000,
                ..
            })
        ));
        assert!(matches!(
            HeaderMode::Blender32.check_size(10, 65536, Format::Rgba8),
            Err(ProtocolError::DimensionTooLarge { what: "height", .. })
        ));
        assert_eq!(
            HeaderMode::Blender32.check_size(65535, 65535, Format::Rgba8),
            Err(ProtocolError::LengthTooLarge(65535 * 65535 * 4))
        );
        // A size whose byte count overflows names the sizes, not a wrapped count, for every
        // header; a row too long for glstream's stride names the glstream header.
        for mode in [
            HeaderMode::Raw,
            HeaderMode::Glstream,
            HeaderMode::Blender,
            HeaderMode::Blender32,
        ] {
            let error = mode
                .check_size(u32::MAX, u32::MAX, Format::Rgba8)
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    ProtocolError::FrameTooLarge { .. } | ProtocolError::DimensionTooLarge { .. }
                ),
                "{mode:?}: {error}"
            );
        }
        let error = HeaderMode::Raw
            .check_size(u32::MAX, u32::MAX, Format::Rgba8)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("4294967295x4294967295 rgba8"), "{error}");
        let error = HeaderMode::Glstream
            .check_size(2_000_000_000, 1, Format::Rgba8)
            .unwrap_err();
        assert_eq!(error, ProtocolError::StrideTooLarge(8_000_000_000));
        assert!(error.to_string().contains("glstream header"), "{error}");
        assert!(
            HeaderMode::Blender32
                .check_size(65535, 65535, Format::Gray8)
                .is_ok()
        );
        assert!(
            HeaderMode::Raw
                .check_size(70000, 70000, Format::Rgba8)
                .is_ok()
        );
        assert!(
            HeaderMode::Glstream
                .check_size(70000, 70000, Format::Rgba8)
                .is_ok()
        );
    }

    #[test]
    fn decode_rejects_empty_frames() {
        for mode in [
            HeaderMode::Blender,
            HeaderMode::Blender32,
            HeaderMode::Glstream,
        ] {
            assert_eq!(
                decode(
                    mode,
                    &encoded(mode, &info(0, 5, Format::Rgba8)),
                    Format::Rgba8
                ),
                Err(ProtocolError::EmptyFrame {
                    width_px: 0,
                    height_px: 5
                })
            );
        }
    }

    #[test]
    fn decode_rejects_short_and_inconsistent_input() {
        assert_eq!(
            decode(HeaderMode::Blender, &[0; 11], Format::Rgba8),
            Err(ProtocolError::Truncated { need: 12, got: 11 })
        );
        let mut bad = encoded(HeaderMode::Blender, &info(4, 4, Format::Rgba8));
        bad[0] += 1;
        assert!(matches!(
            decode(HeaderMode::Blender, &bad, Format::Rgba8),
            Err(ProtocolError::LengthMismatch { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_takes_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            for mode in [HeaderMode::Blender, HeaderMode::Blender32, HeaderMode::Raw, HeaderMode::Glstream] {
                if let Ok(d) = decode(mode, &bytes, Format::Rgba8) {
                    proptest::prop_assert_eq!(d.payload_len, d.format.frame_bytes(d.width_px, d.height_px));
                }
            }
        }

        #[test]
        fn truncated_headers_are_reported(width in 1u32..=65535, height in 1u32..=65535, keep in 0usize..56) {
            for mode in [HeaderMode::Blender, HeaderMode::Glstream] {
                let frame = info(width, height, Format::Rgba8);
                let bytes = encoded(mode, &frame);
                let d = decode(mode, &bytes, Format::Rgba8).unwrap();
                proptest::prop_assert_eq!((d.width_px, d.height_px, d.payload_len), (width, height, frame.payload_len()));
                let keep = keep.min(bytes.len() - 1);
                proptest::prop_assert_eq!(
                    decode(mode, &bytes[..keep], Format::Rgba8),
                    Err(ProtocolError::Truncated { need: mode.header_len(), got: keep })
                );
            }
        }
    }
}
