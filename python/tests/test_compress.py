"""Compressed frames (glstream header v2): every codec and format the spec allows, built here from
real frames with the reference encoders and served over TCP and ZeroMQ, and every refusal the
spec lists."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zmq

import glstream
from helpers import (
    CHANNELS, DTYPES, TIMEOUT, H, W, reference_frames, sending, v2_frame,
)

CARRIES = {
    "none": ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"],
    "qoi": ["rgba8", "bgra8", "rgb8"],
    "zstd": ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"],
    "lz4": ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"],
    "jpeg": ["rgba8", "bgra8", "rgb8", "gray8"],
}
CASES = [(codec, fmt) for codec, formats in CARRIES.items() for fmt in formats]
_REFERENCE: dict = {}


def reference(fmt: str) -> list:
    """Frames 0 and 1 of the real binary in ``fmt``, rows top-down (cached per format)."""
    if fmt not in _REFERENCE:
        _REFERENCE[fmt] = reference_frames(2, fmt, "--scene", "cube")
    return _REFERENCE[fmt]


def wire(image: np.ndarray, top_down: bool) -> np.ndarray:
    return image if top_down else image[::-1]


def check(frame, want: np.ndarray, codec: str, fmt: str) -> None:
    assert frame.codec == codec and frame.format == fmt
    assert frame.pixels.shape == want.shape and frame.pixels.dtype == want.dtype
    if codec != "jpeg":
        assert np.array_equal(frame.pixels, want)
        return
    # Lossy: close to the original, alpha 255, channels in the format's order.
    colour = slice(0, 3) if CHANNELS[fmt] >= 3 else slice(0, 1)
    error = np.abs(frame.pixels[:, :, colour].astype(int) - want[:, :, colour].astype(int))
    assert error.mean() < 4, error.mean()
    if CHANNELS[fmt] == 4:
        assert (frame.pixels[:, :, 3] == 255).all()


@pytest.mark.parametrize("codec, fmt", CASES)
def test_each_codec_decodes_over_tcp(codec, fmt):
    images = reference(fmt)
    # 7 rows a strip: 10 strips, the last one short; frame 1 sent top-down, frame 0 bottom-up.
    data = b"".join(
        v2_frame(wire(image, bool(i)), fmt, codec, 7, index=i, stamp=1000 + i, top_down=bool(i))
        for i, image in enumerate(images)
    )
    server = sending(data)
    with glstream.open(server.url, timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    server.close()
    assert [(f.index, f.timestamp_ns) for f in frames] == [(0, 1000), (1, 1001)]
    for frame, want in zip(frames, images):
        check(frame, want, codec, fmt)


def test_the_request_id_of_a_v2_header_is_the_frames():
    # --control sends v2 headers, uncompressed (codec 0) or not, with the id of the request
    # each frame answers.
    images = reference("rgb8")
    data = (v2_frame(wire(images[0], False), "rgb8", "none", 16, index=0, request_id=42)
            + v2_frame(wire(images[1], False), "rgb8", "lz4", 64, index=1, request_id=0))
    server = sending(data)
    with glstream.open(server.url, timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    server.close()
    assert [(f.index, f.request_id, f.codec) for f in frames] == [(0, 42, "none"), (1, 0, "lz4")]
    for frame, want in zip(frames, images):
        assert np.array_equal(frame.pixels, want)


def test_v1_and_v2_frames_mix_on_one_stream_and_one_strip_works():
    from helpers import v1_header

    images = reference("rgba8")
    first = v1_header(W, H, "rgba8", index=0) + wire(images[0], False).tobytes()
    second = v2_frame(wire(images[1], False), "rgba8", "zstd", H, index=1)  # one strip
    server = sending(first + second)
    with glstream.open(server.url, header="glstream", timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    server.close()
    assert [f.codec for f in frames] == ["none", "zstd"]
    for frame, want in zip(frames, images):
        assert np.array_equal(frame.pixels, want)


@pytest.mark.parametrize("codec", ["qoi", "zstd", "lz4", "jpeg"])
def test_each_codec_decodes_over_zmq(codec):
    images = reference("bgra8")
    context = zmq.Context.instance()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        with glstream.open(f"zmq+tcp://127.0.0.1:{port}", timeout=TIMEOUT) as stream:
            for i, image in enumerate(images):
                frame = v2_frame(wire(image, False), "bgra8", codec, 16, index=i)
                header_length = struct.unpack_from("<H", frame, 6)[0]
                sock.send_multipart([frame[:header_length], frame[header_length:]])
                got = next(stream)
                assert got.index == i
                check(got, image, codec, "bgra8")
    finally:
        sock.close(0)


def bad(codec: str = "zstd", fmt: str = "rgba8", per_strip: int = 8, **override) -> bytes:
    """A v2 frame encoded in strips of ``per_strip`` rows, with header fields overridden."""
    image = np.zeros((H, W, CHANNELS[fmt]), DTYPES[fmt])
    image[::3] = 7
    return v2_frame(image, fmt, codec, per_strip, **override)


def strip_of(codec: str, fmt: str, rows: int, width: int = W) -> bytes:
    from helpers import encode_strip

    return encode_strip(codec, np.full((rows, width, CHANNELS[fmt]), 9, DTYPES[fmt]), fmt)


REFUSALS = {
    "no strips": (bad(strips=0, strip_lengths=[], payload=b""), "0 strips|header length"),
    "1025 strips": (bad(strips=1025), "1025 strips|header length"),
    "0 rows a strip": (bad(rows=0), "0 rows per strip"),
    "strips that do not cover the rows": (bad(rows=5), "do not cover"),
    "a header length that is not 80 + 4 S": (bad(header_length=80 + 4 * 9), "header length"),
    "a payload length that is not the strips'": (bad(payload_length=5), "sum of the strip"),
    "a raw length that is not stride x height": (bad(raw_length=W * H * 4 + 4), "payload length"),
    "an unknown codec": (bad(codec_code=9), "unknown codec 9"),
    "qoi for gray8": (bad("none", "gray8", codec_code=1), "qoi cannot carry gray8"),
    "jpeg for depth32f": (bad("none", "depth32f", codec_code=4), "jpeg cannot carry depth32f"),
    "an unknown format": (bad(format=6), "format code 6"),
    "a raw length over 1 GiB": (
        struct.pack("<4sHHIIIIIIQQQQQII", b"GLST", 2, 84, 16384, 16385, 1, 0, 65536, 2, 0, 0, 9,
                    65536 * 16385, 0, 1, 16385) + struct.pack("<I", 9), "1 GiB"),
    "a payload length over 1 GiB": (
        struct.pack("<4sHHIIIIIIQQQQQII", b"GLST", 2, 84, 4, 4, 1, 0, 16, 2, 0, 0, (1 << 30) + 1,
                    64, 0, 1, 4) + struct.pack("<I", (1 << 30) + 1), "1 GiB"),
    "a zstd strip of too few rows": (
        bad(per_strip=H, payload=strip_of("zstd", "rgba8", H - 1),
            strip_lengths=[len(strip_of("zstd", "rgba8", H - 1))]), "content size"),
    "a zstd strip with bytes after its frame": (
        bad(per_strip=H, payload=strip_of("zstd", "rgba8", H) + b"\0",
            strip_lengths=[len(strip_of("zstd", "rgba8", H)) + 1]), "exactly one zstd frame"),
    "an lz4 strip of too few rows": (
        bad("lz4", per_strip=H, payload=strip_of("lz4", "rgba8", H - 1),
            strip_lengths=[len(strip_of("lz4", "rgba8", H - 1))]), "lz4"),
    "a qoi strip of another size": (
        bad("qoi", per_strip=H, payload=strip_of("qoi", "rgba8", H, W - 1),
            strip_lengths=[len(strip_of("qoi", "rgba8", H, W - 1))]), "QOI image of"),
    "a qoi strip with 3 channels for rgba8": (
        bad("qoi", per_strip=H, payload=strip_of("qoi", "rgb8", H),
            strip_lengths=[len(strip_of("qoi", "rgb8", H))]), "x3, expected"),
    "a jpeg strip of another size": (
        bad("jpeg", per_strip=H, payload=strip_of("jpeg", "rgba8", H - 1),
            strip_lengths=[len(strip_of("jpeg", "rgba8", H - 1))]), "expected a JPEG"),
    "a grey jpeg for rgb8": (
        bad("jpeg", "rgb8", per_strip=H, payload=strip_of("jpeg", "gray8", H),
            strip_lengths=[len(strip_of("jpeg", "gray8", H))]), "expected a JPEG"),
    "a corrupt zstd strip": (
        bad(per_strip=H, payload=b"\x28\xb5\x2f\xfd" + bytes(40), strip_lengths=[44]), "zstd strip 0"),
    "a corrupt lz4 strip": (bad("lz4", per_strip=H, payload=b"\xff" * 40, strip_lengths=[40]), "lz4"),
    "a truncated jpeg strip": (
        bad("jpeg", per_strip=H, payload=strip_of("jpeg", "rgba8", H)[:200], strip_lengths=[200]),
        "jpeg strip 0"),
    "an uncompressed strip of the wrong length": (
        bad("none", per_strip=H, payload=bytes(10), strip_lengths=[10]), "strip 0 of 10 bytes"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_of_the_spec_is_a_protocol_error(case):
    data, match = REFUSALS[case]
    server = sending(data, hold=True)
    with glstream.open(server.url, timeout=TIMEOUT) as stream:
        with pytest.raises(glstream.ProtocolError, match=match):
            stream.read()
    server.close()


# ---- the real binary's --compress --------------------------------------------------------

BINARY_CASES = [
    ("qoi", "rgba8"), ("qoi", "bgra8"), ("qoi", "rgb8"),
    ("zstd", "rgba8"), ("zstd", "gray8"), ("zstd:19", "depth32f"),
    ("lz4", "rgb8"), ("lz4", "depth32f"),
    ("jpeg", "rgba8"), ("jpeg", "bgra8"), ("jpeg:95", "rgb8"), ("jpeg", "gray8"),
]
# 100 rows in 4 threads' strips (multiples of 16 rows): 32, 32, 32 and 4, so a short last strip.
CW, CH = 96, 100
CSIZE = ["--width", str(CW), "--height", str(CH), "--compress-threads", "4"]


def binary_check(frame, want, codec, fmt):
    assert frame.codec == codec.split(":")[0] and frame.format == fmt
    assert frame.pixels.shape == want.shape and frame.pixels.dtype == want.dtype
    if not codec.startswith("jpeg"):
        assert np.array_equal(frame.pixels, want)
        return
    colour = slice(0, 3) if CHANNELS[fmt] >= 3 else slice(0, 1)
    error = np.abs(frame.pixels[:, :, colour].astype(int) - want[:, :, colour].astype(int))
    assert error.mean() < 6, error.mean()  # lossy, quality 80 by default
    if CHANNELS[fmt] == 4:
        assert (frame.pixels[:, :, 3] == 255).all()


@pytest.mark.parametrize("codec, fmt", BINARY_CASES)
def test_the_binarys_compressed_frames_decode_over_tcp(producers, codec, fmt):
    flip = ["--flip"] if fmt in ("bgra8", "gray8") else []
    producer = producers("--port", "0", *CSIZE, "--frames", "3", "--policy", "lossless",
                         "--header", "glstream", "--compress", codec, "--format", fmt, *flip)
    with glstream.open("tcp://" + producer.endpoint(), timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    assert [f.index for f in frames] == [0, 1, 2]
    for frame, want in zip(frames, reference_frames(3, fmt, w=CW, h=CH)):
        binary_check(frame, want, codec, fmt)
    assert producer.wait() == 0


@pytest.mark.parametrize("codec", ["qoi", "zstd", "lz4", "jpeg"])
def test_the_binarys_compressed_frames_decode_over_zmq(producers, codec):
    producer = producers("--zmq-bind", "tcp://127.0.0.1:*", *CSIZE, "--frames", "3",
                         "--compress", codec, ready="zmq push listening on ")
    url = "zmq+" + producer.endpoint("zmq push listening on ")
    with glstream.open(url, timeout=TIMEOUT) as stream:
        frames = [next(stream).copy() for _ in range(3)]
    assert [f.index for f in frames] == [0, 1, 2]
    for frame, want in zip(frames, reference_frames(3, "rgba8", w=CW, h=CH)):
        binary_check(frame, want, codec, "rgba8")


def test_the_binarys_compressed_stream_over_unix_in_one_strip(producers):
    from helpers import scratch_path

    path = scratch_path("c.sock")
    producer = producers("--unix", path, "--width", "64", "--height", "48", "--frames", "2",
                         "--policy", "lossless", "--header", "glstream", "--compress", "zstd",
                         "--compress-threads", "1")
    with glstream.open("unix://" + path, timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    assert [f.index for f in frames] == [0, 1]
    for frame, want in zip(frames, reference_frames(2, "rgba8", w=64, h=48)):
        binary_check(frame, want, "zstd", "rgba8")
    assert producer.wait() == 0


@pytest.mark.parametrize("codec", ["qoi", "zstd", "lz4", "jpeg"])
def test_large_frames_decode_on_threads_to_the_same_pixels(codec):
    # 512x256 rgba8 (512 KiB) in 8 strips: over glstream._wire.PARALLEL_BYTES, so the strips are
    # decoded on the pool. Smooth ramps, so that JPEG stays close.
    from glstream._wire import PARALLEL_BYTES

    y, x = np.mgrid[0:256, 0:512]
    image = np.stack([x // 2, y, (x + y) // 3, np.full_like(x, 255)], axis=2).astype(np.uint8)
    assert image.nbytes >= PARALLEL_BYTES
    good = v2_frame(image, "rgba8", codec, 32, index=0)
    server = sending(good)
    with glstream.open(server.url, timeout=TIMEOUT) as stream:
        (frame,) = [f.copy() for f in stream]
    server.close()
    check(frame, image[::-1], codec, "rgba8")
    if codec == "lz4":
        return  # an LZ4 block has no signature to break
    # The last strip's first bytes broken: that strip's error, from the pool.
    broken = bytearray(good)
    last = len(good) - struct.unpack_from("<I", good, 80 + 4 * 7)[0]
    broken[last:last + 4] = b"XXXX"
    server = sending(bytes(broken), hold=True)
    with glstream.open(server.url, timeout=TIMEOUT) as stream:
        with pytest.raises(glstream.ProtocolError, match="strip 7"):
            stream.read()
    server.close()
