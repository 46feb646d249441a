"""TCP and Unix sockets against the real binary: every header (detected and named), every
format, a stream that ends, and peers written here that misbehave."""

from __future__ import annotations

import os
import struct
import time

import numpy as np
import pytest

import glstream
from helpers import (
    TIMEOUT, H, W, V1, FakeServer, reference_frames, run, scratch_path, sending, v1_header,
)

SIZE = ["--width", str(W), "--height", str(H)]
FORMATS = ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"]


def tcp_url(producer) -> str:
    return "tcp://" + producer.endpoint()


def assert_frames_equal(frames, expected) -> None:
    assert len(frames) == len(expected)
    for i, (frame, want) in enumerate(zip(frames, expected)):
        assert frame.pixels.shape == want.shape, i
        assert frame.pixels.dtype == want.dtype, i
        assert np.array_equal(frame.pixels, want), f"frame {i} differs"


def read_all(url: str, **kw):
    with glstream.open(url, timeout=TIMEOUT, **kw) as stream:
        return [frame.copy() for frame in stream]


def test_a_blender_stream_is_detected_and_ends_when_the_server_does(producers):
    producer = producers(
        "--port", "0", *SIZE, "--frames", "5", "--policy", "lossless", "--format", "rgba8")
    frames = read_all(tcp_url(producer))
    assert [f.header for f in frames] == ["blender"] * 5
    assert [(f.index, f.timestamp_ns, f.request_id) for f in frames] == [(None, None, None)] * 5
    assert_frames_equal(frames, reference_frames(5))
    assert producer.wait() == 0


def test_a_glstream_header_is_detected_with_index_and_timestamp(producers):
    producer = producers(
        "--port", "0", *SIZE, "--frames", "4", "--policy", "lossless", "--header", "glstream")
    before = time.time_ns()
    frames = read_all(tcp_url(producer))
    assert [f.header for f in frames] == ["glstream"] * 4
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(isinstance(f.timestamp_ns, int) and f.timestamp_ns > before - 60e9 for f in frames)
    assert_frames_equal(frames, reference_frames(4))
    assert producer.wait() == 0


def test_a_blender32_stream_is_detected(producers):
    producer = producers(
        "--port", "0", *SIZE, "--frames", "3", "--policy", "lossless", "--header", "blender32")
    frames = read_all(tcp_url(producer))
    assert [f.header for f in frames] == ["blender32"] * 3
    assert_frames_equal(frames, reference_frames(3))


@pytest.mark.parametrize("header", ["blender", "blender32", "glstream"])
def test_a_named_header_reads_its_stream(producers, header):
    producer = producers(
        "--port", "0", *SIZE, "--frames", "2", "--policy", "lossless", "--header", header)
    frames = read_all(tcp_url(producer), header=header)
    assert_frames_equal(frames, reference_frames(2))


def test_a_named_header_refuses_another(producers):
    producer = producers(
        "--port", "0", *SIZE, "--frames", "2", "--policy", "lossless", "--header", "blender")
    with pytest.raises(glstream.ProtocolError, match="magic"):
        read_all(tcp_url(producer), header="glstream")


def test_raw_frames_need_and_use_the_given_size(producers):
    producer = producers("--port", "0", *SIZE, "--frames", "3", "--policy", "lossless",
                         "--header", "raw", "--format", "rgb8", "--flip")
    frames = read_all(tcp_url(producer), header="raw", width=W, height=H, format="rgb8",
                      top_down=True)
    assert [f.header for f in frames] == ["raw"] * 3
    assert_frames_equal(frames, reference_frames(3, "rgb8"))
    with pytest.raises(ValueError, match="width"):
        glstream.open("tcp://127.0.0.1:1", header="raw")


def test_unix_sockets_carry_every_header(producers):
    path = scratch_path("s.sock")
    producer = producers("--unix", path, *SIZE, "--frames", "3", "--policy", "lossless",
                         "--header", "glstream", "--flip")
    assert producer.endpoint() == "unix:" + path
    frames = read_all("unix://" + path)
    assert [f.index for f in frames] == [0, 1, 2]
    assert_frames_equal(frames, reference_frames(3))
    assert producer.wait() == 0
    assert not os.path.exists(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("header", ["glstream", "blender"])
def test_every_format_arrives_as_the_binary_sends_it(producers, fmt, header):
    producer = producers("--port", "0", *SIZE, "--frames", "2", "--policy", "lossless",
                         "--header", header, "--format", fmt)
    # The Blender headers carry no format: 4 bytes a pixel is rgba8 unless format= says.
    hint = {"format": fmt} if header == "blender" and fmt in ("bgra8", "depth32f") else {}
    frames = read_all(tcp_url(producer), **hint)
    expected = reference_frames(2, fmt)
    assert_frames_equal(frames, expected)
    assert frames[0].format == fmt
    channels, dtype = {"rgba8": (4, np.uint8), "bgra8": (4, np.uint8), "rgb8": (3, np.uint8),
                       "gray8": (1, np.uint8), "depth32f": (1, np.float32)}[fmt]
    assert frames[0].pixels.shape == (H, W, channels) and frames[0].pixels.dtype == dtype


def test_rows_are_top_down_as_snapshot_writes_them(producers, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    run("snapshot", "--frame", "0", *SIZE, "--output", str(shot))
    expected = np.asarray(Image.open(shot).convert("RGBA"))
    for flip in ([], ["--flip"]):
        producer = producers("--port", "0", *SIZE, "--frames", "1", "--header", "glstream", *flip)
        (frame,) = read_all(tcp_url(producer))
        assert np.array_equal(frame.pixels, expected), flip


def test_the_buffer_is_reused_and_copy_keeps_a_frame(producers):
    producer = producers("--port", "0", *SIZE, "--frames", "3", "--policy", "lossless",
                         "--scene", "pattern", "--header", "glstream")
    with glstream.open(tcp_url(producer), timeout=TIMEOUT) as stream:
        first = next(stream)
        kept = first.copy()
        address = first.pixels.__array_interface__["data"][0]
        second = next(stream)
        assert second.pixels.__array_interface__["data"][0] == address  # no new allocation
        assert kept.index == 0 and second.index == 1
        assert not np.array_equal(kept.pixels, second.pixels)  # the copy kept frame 0
        assert kept.pixels.flags.writeable and kept.pixels.flags.c_contiguous


# ---- peers that misbehave -----------------------------------------------------------------


def test_garbage_instead_of_a_header_is_a_protocol_error():
    server = sending(b"HTTP/1.1 200 OK\r\n\r\n" + bytes(range(256)) * 8)
    with pytest.raises(glstream.ProtocolError, match="not a glstream, Blender or Blender32"):
        read_all(server.url)
    server.close()


@pytest.mark.parametrize(
    "header, match",
    [
        (struct.pack("<QHH", (1 << 30) + 4, 32768, 8193), "header"),  # over 1 GiB: never allocated
        (struct.pack("<QHH", 13, 2, 2), "header"),  # 13 bytes is no format's 2x2 frame
        (b"GLST" + struct.pack("<HH", 9, 56) + bytes(48), "version 9"),
        (b"GLST" + struct.pack("<HH", 1, 60) + bytes(48), "length 60"),
        (V1.pack(b"GLST", 1, 56, 16384, 16385, 1, 0, 65536, 0, 0, 0, 65536 * 16385), "1 GiB"),
        (v1_header(4, 4, "rgba8", length=63), "payload length 63"),
        (v1_header(4, 4, "rgba8", stride=20, length=80), "stride 20"),
        (V1.pack(b"GLST", 1, 56, 4, 4, 9, 0, 16, 0, 0, 0, 64), "format code 9"),
    ],
)
def test_bad_headers_are_refused_before_anything_is_allocated(header, match):
    server = sending(header + bytes(64), hold=True)
    with pytest.raises(glstream.ProtocolError, match=match):
        read_all(server.url)
    server.close()


def test_a_server_that_closes_mid_frame_is_closed_not_a_short_frame():
    server = sending(struct.pack("<QHH", 64, 4, 4) + bytes(30))
    with pytest.raises(glstream.Closed, match="30 of 64 bytes"):
        read_all(server.url)
    server.close()
    server = sending(b"GLST" + bytes(10))
    with pytest.raises(glstream.Closed, match="mid-frame"):
        read_all(server.url)
    server.close()


def test_a_server_that_sends_nothing_is_a_timeout():
    server = sending(b"", hold=True)
    started = time.monotonic()
    with glstream.open(server.url, timeout=0.5) as stream:
        with pytest.raises(glstream.Timeout):
            stream.read()
    assert time.monotonic() - started < TIMEOUT
    server.close()


def test_a_frame_that_stops_half_way_is_a_timeout():
    server = sending(struct.pack("<QHH", 64, 4, 4) + bytes(20), hold=True)
    with glstream.open(server.url, timeout=0.5) as stream:
        with pytest.raises(glstream.Timeout, match="20 of 64 bytes"):
            stream.read()
    server.close()


def test_an_empty_stream_ends_at_once():
    server = sending(b"")
    assert read_all(server.url) == []
    server.close()


def test_nobody_listening_is_a_connect_error():
    server = FakeServer(lambda conn: None)
    url = server.url
    with glstream.open(url, timeout=TIMEOUT) as stream:  # let it accept and close
        assert stream.read() is None
    server.close()
    with pytest.raises(glstream.ConnectError):
        glstream.open(url)
    with pytest.raises(glstream.ConnectError):
        glstream.open("unix://" + scratch_path("absent.sock"))


def test_bad_arguments_are_value_errors():
    for kwargs in ({"header": "mp4"}, {"pattern": "req"}, {"format": "yuv"}, {"timeout": 0}):
        with pytest.raises(ValueError):
            glstream.open("tcp://127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="scheme"):
        glstream.open("http://127.0.0.1:1")
