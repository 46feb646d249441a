"""ZeroMQ streams: a PULL or SUB socket connected to a ``glstream --zmq-bind`` producer. Each
frame is one two-part message, [glstream v1 or v2 header, payload]; uncompressed payloads are
viewed in place in libzmq's message (no copy)."""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from ._errors import ConnectError, ProtocolError, Timeout
from ._formats import MAX_BYTES
from ._stream import Frame, pixels_of
from ._wire import CODECS, MAX_HEADER, Decoder, parse_glstream


class ZmqSource:
    def __init__(self, endpoint: str, pattern: str) -> None:
        try:
            import zmq
        except ImportError as e:
            raise ImportError(f'zmq+ URLs need the [zmq] extra (pip install "glstream[zmq]"): {e}') from e
        self._zmq = zmq
        self._endpoint = endpoint
        self._context: Any = zmq.Context.instance()
        sock = self._context.socket(zmq.SUB if pattern == "sub" else zmq.PULL)
        try:
            # Options before connect. A part larger than a frame can be is refused by libzmq
            # before it allocates it.
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_BYTES)
            sock.setsockopt(zmq.RCVHWM, 2)
            sock.setsockopt(zmq.LINGER, 0)
            if pattern == "sub":
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            raise ConnectError(f"cannot connect to {endpoint}: {e}") from e
        self._sock = sock
        self._pixels: Optional[np.ndarray] = None
        self._decoder: Optional[Decoder] = None

    def close(self) -> None:
        self._sock.close(0)
        if self._decoder is not None:
            self._decoder.close()

    def next(self, deadline: Optional[float]) -> Optional[Frame]:
        sock = self._sock
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000))):
                raise Timeout(f"no frame from {self._endpoint} within the timeout")
        parts = sock.recv_multipart(copy=False)
        if len(parts) != 2:
            raise ProtocolError(f"a message of {len(parts)} parts, expected 2 [header, payload]")
        head, body = parts
        if len(head) > MAX_HEADER:
            raise ProtocolError(f"a header part of {len(head)} bytes")
        info = parse_glstream(head.bytes)
        payload: Any = body.buffer
        if len(payload) != info.payload_length:
            raise ProtocolError(
                f"frame {info.index}: a payload part of {len(payload)} bytes, the header says "
                f"{info.payload_length}"
            )
        if info.codec == 0:
            pixels = pixels_of(payload, info)  # a view of libzmq's message, kept alive by it
            owner: Any = body
        else:
            raw = self._pixels
            if raw is None or raw.size != info.raw_length:
                raw = self._pixels = np.empty(info.raw_length, np.uint8)
            if self._decoder is None:
                self._decoder = Decoder()
            self._decoder.decode(info, payload, raw)
            pixels, owner = pixels_of(raw, info), raw
        return Frame(
            pixels, info.index, info.timestamp_ns, info.format.name, CODECS[info.codec],
            "glstream", owner, info.request_id,
        )
