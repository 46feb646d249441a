"""Shared memory (iceoryx2) against the real binary: zero-copy frames, every format, the end of
a stream, a timeout, a missing service."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import glstream
from helpers import TIMEOUT, H, W, decode_pattern, reference_frames, service

SIZE = ["--width", str(W), "--height", str(H)]


def publishing(producers, name, *args):
    return producers("-v", "--shm", name, *SIZE, *args, ready="publishing on shm:")


def test_frames_are_views_of_the_sample_in_shared_memory(producers):
    name = service("zero-copy")
    producer = publishing(producers, name, "--scene", "pattern", "--frames", "30",
                          "--policy", "lossless")
    with glstream.open("shm://" + name, timeout=TIMEOUT) as stream:
        indices = []
        for frame in stream:
            sample = frame._owner
            start = sample.payload().data_ptr
            length = sample.payload().number_of_elements
            address = frame.pixels.__array_interface__["data"][0]
            # Rows bottom-up: the top-down view starts at the last row; all of it is inside.
            assert start <= address < start + length
            lowest = min(address, address + (H - 1) * frame.pixels.strides[0])
            assert lowest == start
            assert not frame.pixels.flags.owndata and not frame.pixels.flags.writeable
            assert np.shares_memory(
                frame.pixels, np.ctypeslib.as_array((ctypes.c_uint8 * length).from_address(start))
            )
            assert decode_pattern(frame.pixels) == frame.index
            indices.append(frame.index)
    assert indices == list(range(30))  # and the stream ended when glstream did
    assert producer.wait() == 0


@pytest.mark.parametrize("fmt", ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"])
def test_every_format_over_shared_memory(producers, fmt):
    name = service(f"format-{fmt}")
    publishing(producers, name, "--format", fmt, "--frames", "2", "--policy", "lossless")
    with glstream.open("shm://" + name, timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    expected = reference_frames(2, fmt)
    assert [f.index for f in frames] == [0, 1]
    for frame, want in zip(frames, expected):
        assert frame.format == fmt and frame.header == "shm"
        assert frame.pixels.dtype == want.dtype and np.array_equal(frame.pixels, want)


def test_flipped_frames_come_out_the_same(producers):
    name = service("flip")
    publishing(producers, name, "--flip", "--frames", "2", "--policy", "lossless")
    with glstream.open("shm://" + name, timeout=TIMEOUT) as stream:
        frames = [frame.copy() for frame in stream]
    assert all(np.array_equal(f.pixels, w) for f, w in zip(frames, reference_frames(2)))


def test_a_service_without_frames_is_a_timeout():
    import iceoryx2 as iox2
    from glstream import FrameHeader

    # A service with glstream's types that nobody publishes on.
    name = service("silent")
    node = (iox2.NodeBuilder.new().signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc))
    held = (node.service_builder(iox2.ServiceName.new(name))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8]).user_header(FrameHeader).create())
    with glstream.open("shm://" + name, timeout=0.5) as stream:
        with pytest.raises(glstream.Timeout):
            stream.read()
    del held


def test_a_missing_service_is_a_connect_error():
    with pytest.raises(glstream.ConnectError, match="no such service"):
        glstream.open("shm://" + service("absent"), timeout=0.3)
    with pytest.raises(ValueError, match="does not apply"):
        glstream.open("shm://x", header="blender")
