"""The headers on the wire (glstream v1 and v2, Blender, Blender32) and the codecs of
``--compress``: parsing with every check, never trusting a size before it is bounded."""

from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ._errors import ProtocolError
from ._formats import FORMATS, MAX_BYTES, Format

__all__ = [
    "GLST_V1",
    "GLST_V2",
    "MAX_HEADER",
    "CODECS",
    "FrameInfo",
    "glstream_header_length",
    "parse_glstream",
    "parse_blender",
    "Decoder",
]

MAGIC = b"GLST"
GLST_V1 = struct.Struct("<4sHHIIIIIIQQQ")  # 56 bytes
GLST_V2 = struct.Struct("<4sHHIIIIIIQQQQQII")  # 80 bytes, then S x u32 strip lengths
assert GLST_V1.size == 56 and GLST_V2.size == 80
MAX_STRIPS = 1024
#: The longest header a stream can send: v2 with 1024 strips.
MAX_HEADER = GLST_V2.size + 4 * MAX_STRIPS
#: Compressed frames this large or larger, in several strips, are decoded on threads.
PARALLEL_BYTES = 1 << 18
BLENDER = struct.Struct("<QHH")
BLENDER32 = struct.Struct("<IHH")

CODECS = {0: "none", 1: "qoi", 2: "zstd", 3: "lz4", 4: "jpeg"}
# The formats each codec can carry (header v2 spec): QOI has no 1-channel or float images, JPEG
# no float images.
_CARRIES = {
    0: {1, 2, 3, 4, 5},
    1: {1, 2, 3},
    2: {1, 2, 3, 4, 5},
    3: {1, 2, 3, 4, 5},
    4: {1, 2, 3, 4},
}


@dataclass
class FrameInfo:
    """What a header says about one frame."""

    header: str  # "glstream", "blender", "blender32" or "raw"
    width: int
    height: int
    format: Format
    top_down: bool
    index: Optional[int]
    timestamp_ns: Optional[int]
    #: Bytes that follow the header on the wire (encoded when compressed).
    payload_length: int
    #: Decoded size: stride x height.
    raw_length: int
    codec: int = 0
    #: The control request this frame answers (``--control``): 0 for none; None where the
    #: header has no room for it (Blender, raw).
    request_id: Optional[int] = 0
    rows_per_strip: int = 0
    strips: List[int] = field(default_factory=list)

    @property
    def stride(self) -> int:
        return self.width * self.format.bytes_per_pixel


def _check_size(width: int, height: int, fmt: Format, stride: int, raw: int, what: str) -> None:
    if width == 0 or height == 0:
        raise ProtocolError(f"{what}: a frame of {width}x{height}")
    if stride != width * fmt.bytes_per_pixel:
        raise ProtocolError(
            f"{what}: stride {stride} is not width {width} x {fmt.bytes_per_pixel} bytes ({fmt.name})"
        )
    if raw != stride * height:
        raise ProtocolError(f"{what}: payload length {raw} is not stride {stride} x height {height}")
    if raw > MAX_BYTES:
        raise ProtocolError(f"{what}: a frame of {raw} bytes is over the 1 GiB bound")


def glstream_header_length(first: bytes) -> int:
    """The whole header's length, from its first 56 bytes (checks magic, version, length)."""
    if len(first) < GLST_V1.size:
        raise ProtocolError(f"a glstream header of {len(first)} bytes, expected at least 56")
    magic, version, length = struct.unpack_from("<4sHH", first)
    if magic != MAGIC:
        raise ProtocolError(f"not a glstream header: magic {bytes(magic)!r}, expected b'GLST'")
    if version == 1:
        if length != GLST_V1.size:
            raise ProtocolError(f"glstream v1 header length {length}, expected 56")
        return length
    if version == 2:
        if length < GLST_V2.size + 4 or length > MAX_HEADER or (length - GLST_V2.size) % 4:
            raise ProtocolError(
                f"glstream v2 header length {length}: not 80 + 4 x strips with 1 to 1024 strips"
            )
        return length
    raise ProtocolError(f"glstream header version {version}: this package reads versions 1 and 2")


def parse_glstream(data: bytes) -> FrameInfo:
    """A whole glstream v1 or v2 header (exactly its length), checked as the spec asks."""
    length = glstream_header_length(data)
    if len(data) != length:
        raise ProtocolError(f"a glstream header of {len(data)} bytes, it says {length}")
    if length == GLST_V1.size:
        (_, _, _, width, height, code, flags, stride, _, index, stamp, payload) = GLST_V1.unpack(
            data
        )
        fmt = _format(code, index)
        _check_size(width, height, fmt, stride, payload, f"frame {index}")
        return FrameInfo(
            "glstream", width, height, fmt, bool(flags & 1), index, stamp, payload, payload
        )
    (_, _, _, width, height, code, flags, stride, codec, index, stamp, payload, raw, request,
     strips, rows) = GLST_V2.unpack_from(data)
    what = f"frame {index}"
    fmt = _format(code, index)
    _check_size(width, height, fmt, stride, raw, what)
    if codec not in CODECS:
        raise ProtocolError(f"{what}: unknown codec {codec}")
    if code not in _CARRIES[codec]:
        raise ProtocolError(f"{what}: codec {CODECS[codec]} cannot carry {fmt.name}")
    if not 1 <= strips <= MAX_STRIPS:
        raise ProtocolError(f"{what}: {strips} strips, expected 1 to 1024")
    if rows == 0:
        raise ProtocolError(f"{what}: 0 rows per strip")
    if strips != -(-height // rows):
        raise ProtocolError(
            f"{what}: {strips} strips of {rows} rows do not cover {height} rows exactly"
        )
    if length != GLST_V2.size + 4 * strips:
        raise ProtocolError(f"{what}: header length {length} is not 80 + 4 x {strips} strips")
    if payload > MAX_BYTES:
        raise ProtocolError(f"{what}: an encoded payload of {payload} bytes is over the 1 GiB bound")
    lengths = list(struct.unpack_from(f"<{strips}I", data, GLST_V2.size))
    if sum(lengths) != payload:
        raise ProtocolError(
            f"{what}: payload length {payload} is not the sum of the strip lengths ({sum(lengths)})"
        )
    if codec == 0:
        # Uncompressed strips are the rows themselves (read straight into the frame buffer).
        for i, strip in enumerate(lengths):
            want = (min(rows, height - i * rows)) * stride
            if strip != want:
                raise ProtocolError(
                    f"{what}: uncompressed strip {i} of {strip} bytes, expected {want}"
                )
    return FrameInfo(
        "glstream", width, height, fmt, bool(flags & 1), index, stamp, payload, raw, codec,
        request, rows, lengths,
    )


def _format(code: int, index: int) -> Format:
    try:
        return FORMATS[code]
    except KeyError:
        raise ProtocolError(f"frame {index}: unknown format code {code}") from None


def blender_format(length: int, height: int, width: int, fmt: Optional[Format]) -> Optional[Format]:
    """The format a Blender header's sizes imply (4 bytes a pixel: rgba8 unless ``fmt`` says
    otherwise), or None when they do not describe a frame."""
    pixels = height * width
    if pixels == 0 or length == 0 or length > MAX_BYTES:
        return None
    if fmt is not None:
        return fmt if length == pixels * fmt.bytes_per_pixel else None
    return {4 * pixels: FORMATS[1], 3 * pixels: FORMATS[3], pixels: FORMATS[4]}.get(length)


def parse_blender(kind: str, data: bytes, fmt: Optional[Format], top_down: bool) -> FrameInfo:
    """A Blender (12-byte) or Blender32 (8-byte) header."""
    length, height, width = (BLENDER if kind == "blender" else BLENDER32).unpack(data)
    found = blender_format(length, height, width, fmt)
    if found is None:
        want = f"{fmt.bytes_per_pixel}" if fmt is not None else "4, 3 or 1"
        raise ProtocolError(
            f"bad {kind} header: payload length {length} for {width}x{height} is not width x "
            f"height x {want} bytes (at most 1 GiB)"
        )
    return FrameInfo(kind, width, height, found, top_down, None, None, length, length, 0, None)


class Decoder:
    """Decodes the strips of a v2 frame into a buffer, codec by codec (decoders imported on
    first use, so that ``[compress]`` is needed only by compressed streams). Frames of
    :data:`PARALLEL_BYTES` or more with several strips are decoded on a pool of threads, one
    strip each (zstd, lz4 and Pillow let go of the GIL while they decode)."""

    def __init__(self) -> None:
        self._local = threading.local()  # a zstd decompressor per thread: they are not shared
        self._pool: Optional[ThreadPoolExecutor] = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def decode(self, info: FrameInfo, payload: memoryview, out: np.ndarray) -> None:
        """Decodes ``payload`` (``info.payload_length`` bytes) into ``out`` (``info.raw_length``
        uint8s), checking that every strip decodes to exactly its rows."""
        starts = [0]
        for length in info.strips:
            starts.append(starts[-1] + length)
        count = len(info.strips)
        workers = min(count, os.cpu_count() or 1)
        if workers > 1 and info.raw_length >= PARALLEL_BYTES:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(os.cpu_count(), "glstream-decode")
            # list() raises the first failing strip's error, in strip order.
            list(self._pool.map(lambda i: self._strip(info, payload, out, starts, i), range(count)))
        else:
            for i in range(count):
                self._strip(info, payload, out, starts, i)

    def _strip(self, info: FrameInfo, payload: memoryview, out: np.ndarray, starts: List[int],
               i: int) -> None:
        stride, codec = info.stride, info.codec
        first = i * info.rows_per_strip
        rows = min(info.rows_per_strip, info.height - first)
        strip = payload[starts[i] : starts[i + 1]]
        target = out[first * stride : (first + rows) * stride]
        name = CODECS[codec]
        try:
            if codec == 0:
                if len(strip) != rows * stride:
                    raise ProtocolError(f"{len(strip)} bytes, expected {rows * stride}")
                target[:] = np.frombuffer(strip, np.uint8)
            elif codec == 1:
                self._qoi(strip, info, rows, target)
            elif codec == 2:
                self._zstd_strip(strip, rows * stride, target)
            elif codec == 3:
                self._lz4(strip, rows * stride, target)
            else:
                self._jpeg(strip, info, rows, target)
        except ProtocolError as e:
            raise ProtocolError(
                f"frame {info.index}: {name} strip {i} (rows {first}..{first + rows}): {e}"
            ) from None
        except ImportError as e:
            raise ImportError(
                f"decoding {name} frames needs the [compress] extra "
                f'(pip install "glstream[compress]"): {e}'
            ) from e
        except Exception as e:  # the codec libraries' own errors on corrupt data
            raise ProtocolError(
                f"frame {info.index}: {name} strip {i} (rows {first}..{first + rows}) does not "
                f"decode: {type(e).__name__}: {e}"
            ) from None

    @staticmethod
    def _qoi(strip: memoryview, info: FrameInfo, rows: int, target: np.ndarray) -> None:
        import qoi

        channels = info.format.channels
        # Checked before decoding: qoi allocates what its header claims.
        if len(strip) < 14 + 8 or bytes(strip[:4]) != b"qoif":
            raise ProtocolError("not a QOI image")
        width, height, ch = struct.unpack_from(">IIB", strip, 4)
        if (width, height, ch) != (info.width, rows, channels):
            raise ProtocolError(
                f"a QOI image of {width}x{height}x{ch}, expected {info.width}x{rows}x{channels}"
            )
        image = qoi.decode(bytes(strip))
        if image.shape != (rows, info.width, channels) or image.dtype != np.uint8:
            raise ProtocolError(f"QOI decoded to {image.shape} {image.dtype}")
        target[:] = image.reshape(-1)

    def _zstd_strip(self, strip: memoryview, size: int, target: np.ndarray) -> None:
        import zstandard

        decompressor = getattr(self._local, "zstd", None)
        if decompressor is None:
            decompressor = self._local.zstd = zstandard.ZstdDecompressor()
        content = zstandard.frame_content_size(strip)
        if content != size:
            raise ProtocolError(
                f"a zstd frame of content size {content} (-1: not set), expected {size}"
            )
        stream = decompressor.decompressobj()
        data = stream.decompress(strip)
        if len(data) != size or not stream.eof or stream.unused_data:
            raise ProtocolError(f"not exactly one zstd frame of {size} bytes")
        target[:] = np.frombuffer(data, np.uint8)

    @staticmethod
    def _lz4(strip: memoryview, size: int, target: np.ndarray) -> None:
        import lz4.block

        data = lz4.block.decompress(strip, uncompressed_size=size)
        if len(data) != size:
            raise ProtocolError(f"decoded to {len(data)} bytes, expected {size}")
        target[:] = np.frombuffer(data, np.uint8)

    @staticmethod
    def _jpeg(strip: memoryview, info: FrameInfo, rows: int, target: np.ndarray) -> None:
        from io import BytesIO

        from PIL import Image

        image = Image.open(BytesIO(strip))  # reads the header only
        gray = info.format.code == 4
        mode = "L" if gray else "RGB"
        if image.format != "JPEG" or image.size != (info.width, rows) or image.mode != mode:
            raise ProtocolError(
                f"a {image.format} image {image.size[0]}x{image.size[1]} {image.mode}, expected "
                f"a JPEG {info.width}x{rows} {mode}"
            )
        pixels = np.asarray(image)
        if pixels.shape[:2] != (rows, info.width):
            raise ProtocolError(f"JPEG decoded to {pixels.shape}")
        out = target.reshape(rows, info.width, info.format.channels)
        code = info.format.code
        if gray:
            out[:, :, 0] = pixels
        elif code == 3:
            out[:] = pixels
        else:
            out[:, :, :3] = pixels if code == 1 else pixels[:, :, ::-1]
            out[:, :, 3] = 255
