"""TCP and Unix socket streams: headers read into a fixed buffer, payloads with ``recv_into``
straight into a buffer reused from frame to frame (no allocation while the size stays)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Optional, Tuple
from urllib.parse import urlsplit

import numpy as np

from ._errors import Closed, ConnectError, ProtocolError, Timeout
from ._formats import MAX_BYTES, Format
from ._stream import Frame, pixels_of
from ._wire import (
    BLENDER,
    BLENDER32,
    CODECS,
    MAX_HEADER,
    Decoder,
    FrameInfo,
    blender_format,
    glstream_header_length,
    parse_blender,
    parse_glstream,
)

_WAITALL = getattr(socket, "MSG_WAITALL", 0)


def connect(scheme: str, rest: str, url: str, timeout: Optional[float]) -> socket.socket:
    """A connected socket for ``tcp://HOST:PORT`` or ``unix:///PATH``."""
    try:
        if scheme == "tcp":
            parts = urlsplit("tcp://" + rest)
            if not parts.hostname or parts.port is None:
                raise ValueError(f"{url!r}: expected tcp://HOST:PORT")
            sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            if not rest:
                raise ValueError(f"{url!r}: expected unix:///PATH")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(rest)
            except BaseException:
                sock.close()
                raise
    except (OSError, socket.timeout) as e:
        raise ConnectError(f"cannot connect to {url}: {e}") from e
    sock.settimeout(None)
    return sock


def _sizes(layout: struct.Struct, data: bytes) -> Tuple[int, int, int]:
    """(length, height, width) of a Blender or Blender32 header."""
    length, height, width = layout.unpack(data)
    return length, height, width


class SocketSource:
    """Frames from a connected stream socket."""

    def __init__(
        self,
        sock: socket.socket,
        header: str,
        fmt: Optional[Format],
        width: Optional[int],
        height: Optional[int],
        top_down: bool,
    ) -> None:
        self._sock = sock
        self._kind = header  # "auto" until the first frame says which
        self._fmt = fmt
        self._top_down = top_down
        self._raw: Optional[FrameInfo] = None
        if header == "raw":
            assert fmt is not None and width and height
            size = width * height * fmt.bytes_per_pixel
            if size > MAX_BYTES:
                raise ValueError(f"a raw frame of {size} bytes is over the 1 GiB bound")
            self._raw = FrameInfo(
                "raw", width, height, fmt, top_down, None, None, size, size, 0, None
            )
        self._header = bytearray(MAX_HEADER)
        self._header_view = memoryview(self._header)
        self._pixels: Optional[np.ndarray] = None  # the reused frame buffer
        self._encoded: Optional[np.ndarray] = None  # the reused compressed payload buffer
        self._decoder: Optional[Decoder] = None
        self._timeout: Optional[float] = None  # what the socket is set to now
        self._frames = 0

    def close(self) -> None:
        self._sock.close()
        if self._decoder is not None:
            self._decoder.close()

    def _fill(self, view: memoryview, deadline: Optional[float], start: bool, what: str) -> bool:
        """Reads exactly ``len(view)`` bytes; False if the stream ended before the first byte of a
        frame (``start``); raises Closed if it ends anywhere else, Timeout at ``deadline``."""
        need, got, sock = len(view), 0, self._sock
        while got < need:
            try:
                if deadline is None:
                    if self._timeout is not None:
                        sock.settimeout(None)
                        self._timeout = None
                    n = sock.recv_into(view[got:], need - got, _WAITALL)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout()
                    sock.settimeout(left)
                    self._timeout = left
                    n = sock.recv_into(view[got:], need - got)
            except socket.timeout:
                raise Timeout(
                    f"no whole frame within the timeout: {got} of {need} bytes of {what}"
                ) from None
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(f"the connection was reset in {what} ({got} of {need} bytes): {e}") from e
            if n == 0:
                if got == 0 and start:
                    return False
                raise Closed(f"the stream ended mid-frame: {got} of {need} bytes of {what}")
            got += n
        return True

    def _buffer(self, attr: str, size: int) -> np.ndarray:
        buffer = getattr(self, attr)
        if buffer is None or buffer.size != size:
            buffer = np.empty(size, np.uint8)
            setattr(self, attr, buffer)
        return buffer

    def next(self, deadline: Optional[float]) -> Optional[Frame]:
        view = self._header_view
        n = self._frames
        kind = self._kind
        if kind == "raw":
            info = self._raw
            assert info is not None
        elif kind == "blender32" or kind == "blender":
            size = BLENDER.size if kind == "blender" else BLENDER32.size
            if not self._fill(view[:size], deadline, True, f"frame {n}'s {kind} header"):
                return None
            info = parse_blender(kind, bytes(view[:size]), self._fmt, self._top_down)
        else:
            # glstream or auto: the first 8 bytes say which (auto) and start the header.
            if not self._fill(view[:8], deadline, True, f"frame {n}'s header"):
                return None
            if kind == "auto":
                kind = self._detect(deadline, n)
            if kind == "glstream":
                self._fill(view[8:56], deadline, False, f"frame {n}'s glstream header")
                length = glstream_header_length(bytes(view[:56]))
                if length > 56:
                    self._fill(view[56:length], deadline, False, f"frame {n}'s glstream header")
                info = parse_glstream(bytes(view[:length]))
            else:  # detected just now, the whole Blender header read
                size = BLENDER.size if kind == "blender" else BLENDER32.size
                info = parse_blender(kind, bytes(view[:size]), self._fmt, self._top_down)
        raw = self._buffer("_pixels", info.raw_length)
        what = f"frame {n}'s payload"
        if info.codec == 0:
            if not self._fill(raw.data, deadline, kind == "raw", what):
                return None
        else:
            encoded = self._buffer("_encoded", info.payload_length)
            self._fill(encoded.data, deadline, False, what)
            if self._decoder is None:
                self._decoder = Decoder()
            self._decoder.decode(info, encoded.data, raw)
        self._frames += 1
        return Frame(
            pixels_of(raw, info),
            info.index,
            info.timestamp_ns,
            info.format.name,
            CODECS[info.codec],
            info.header,
            raw,
            info.request_id,
        )

    def _detect(self, deadline: Optional[float], n: int) -> str:
        """Which header the stream sends, from the first 8 bytes in the header buffer (reading
        the rest of a Blender header if need be). Fixed for the rest of the stream."""
        first = bytes(self._header_view[:8])
        if first[:4] == b"GLST":
            kind = "glstream"
        elif blender_format(*_sizes(BLENDER32, first), self._fmt) is not None:
            # A Blender header read as Blender32 has height 0 (the length's high half), so the
            # two cannot be mistaken for each other.
            kind = "blender32"
        else:
            self._fill(self._header_view[8:12], deadline, False, f"frame {n}'s header")
            if blender_format(*_sizes(BLENDER, bytes(self._header_view[:12])), self._fmt) is None:
                raise ProtocolError(
                    f"not a glstream, Blender or Blender32 header: first bytes "
                    f"{bytes(self._header_view[:12]).hex(' ')} (a raw stream needs header=\"raw\")"
                )
            kind = "blender"
        self._kind = kind
        return kind
