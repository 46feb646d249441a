"""ZeroMQ against the real binary (PULL over tcp, SUB over ipc), and peers written here that send
what is not a frame."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

import glstream
from helpers import TIMEOUT, H, W, decode_pattern, reference_frames, scratch_path, v1_header

SIZE = ["--width", str(W), "--height", str(H)]


def endpoint(producer, pattern="push"):
    return producer.endpoint(f"zmq {pattern} listening on ")


def test_a_pull_consumer_gets_every_frame_over_tcp(producers):
    producer = producers("--zmq-bind", "tcp://127.0.0.1:*", *SIZE, "--frames", "6",
                         ready="zmq push listening on ")
    url = "zmq+" + endpoint(producer)
    assert url.startswith("zmq+tcp://127.0.0.1:")
    with glstream.open(url, timeout=TIMEOUT) as stream:
        frames = [next(stream).copy() for _ in range(6)]
    assert [f.index for f in frames] == list(range(6))
    assert all(np.array_equal(f.pixels, w) for f, w in zip(frames, reference_frames(6)))
    assert producer.wait() == 0


def test_payloads_are_viewed_in_place(producers):
    # 128 KiB frames: pyzmq copies parts under 64 KiB into Python bytes, larger ones it does not.
    producer = producers("--zmq-bind", "tcp://127.0.0.1:*", "--width", "256", "--height", "128",
                         "--frames", "2", ready="zmq push listening on ")
    with glstream.open("zmq+" + endpoint(producer), timeout=TIMEOUT) as stream:
        frame = next(stream)
        message = frame._owner  # the zmq.Frame holding libzmq's message
        assert isinstance(message, zmq.Frame) and len(message) == 256 * 128 * 4
        assert np.shares_memory(frame.pixels, np.frombuffer(message.buffer, np.uint8))
        assert not frame.pixels.flags.owndata
        next(stream)


def test_a_subscriber_over_ipc_gets_whole_frames_in_order(producers):
    path = scratch_path("z.ipc")
    producer = producers("--zmq-bind", "ipc://" + path, "--zmq-pattern", "pub", "--fps", "60",
                         "--scene", "pattern", "--flip", *SIZE, ready="zmq pub listening on ")
    assert endpoint(producer, "pub") == "ipc://" + path
    with glstream.open("zmq+ipc://" + path, pattern="sub", timeout=TIMEOUT) as stream:
        indices = []
        for frame in stream:
            assert decode_pattern(frame.pixels) == frame.index
            indices.append(frame.index)
            if len(indices) == 8:
                break
    assert indices == sorted(indices) and len(set(indices)) == 8


@pytest.mark.parametrize("fmt", ["bgra8", "rgb8", "gray8", "depth32f"])
def test_every_format_over_zmq(producers, fmt):
    producer = producers("--zmq-bind", "tcp://127.0.0.1:*", *SIZE, "--frames", "1",
                         "--format", fmt, ready="zmq push listening on ")
    with glstream.open("zmq+" + endpoint(producer), timeout=TIMEOUT) as stream:
        frame = next(stream).copy()
    (want,) = reference_frames(1, fmt)
    assert frame.format == fmt and np.array_equal(frame.pixels, want)


def test_no_producer_is_a_timeout():
    with glstream.open("zmq+ipc://" + scratch_path("nobody.ipc"), timeout=0.5) as stream:
        with pytest.raises(glstream.Timeout):
            stream.read()


@pytest.fixture
def pusher():
    context = zmq.Context.instance()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"zmq+tcp://127.0.0.1:{port}"
    sock.close(0)


@pytest.mark.parametrize(
    "parts, match",
    [
        ([b"x"], "1 parts"),
        ([v1_header(4, 4, "rgba8"), bytes(64), b""], "3 parts"),
        ([b"not a header at all, but long enough to be read as one........", bytes(64)], "magic"),
        ([v1_header(4, 4, "rgba8"), bytes(63)], "63 bytes"),
        ([v1_header(4, 4, "rgba8", length=65), bytes(65)], "payload length 65"),
    ],
)
def test_a_message_that_is_not_a_frame_is_a_protocol_error(pusher, parts, match):
    sock, url = pusher
    with glstream.open(url, timeout=TIMEOUT) as stream:
        sock.send_multipart(parts)
        with pytest.raises(glstream.ProtocolError, match=match):
            stream.read()
