"""``open(url)``, the ``Stream`` it returns and the ``Frame`` objects a stream yields."""

from __future__ import annotations

import time
from typing import Any, Iterator, Optional

import numpy as np

from ._errors import Error
from ._formats import BY_NAME, Format
from ._wire import FrameInfo

__all__ = ["Frame", "Stream", "open", "HEADERS"]

#: The values ``open(header=...)`` takes.
HEADERS = ("auto", "blender", "blender32", "glstream", "raw")


class Frame:
    """One frame of a stream.

    ``pixels`` is a numpy array of shape (height, width, channels), rows top-down: uint8 with 4
    channels (rgba8, bgra8, in that byte order), 3 (rgb8) or 1 (gray8), float32 with 1 channel
    (depth32f). It is a view, not a copy, and it is valid only until the stream's next frame is
    taken: shared memory hands the sample back to glstream then, and the socket transports read
    the next frame into the same buffer. Call :meth:`copy` (or ``frame.pixels.copy()``) to keep
    a frame longer. Shared-memory frames are read-only (other subscribers read the same memory).
    """

    __slots__ = (
        "pixels", "index", "timestamp_ns", "format", "codec", "header", "request_id", "_owner"
    )

    def __init__(
        self,
        pixels: np.ndarray,
        index: Optional[int],
        timestamp_ns: Optional[int],
        format: str,
        codec: str = "none",
        header: str = "glstream",
        owner: Any = None,
        request_id: Optional[int] = 0,
    ) -> None:
        self.pixels = pixels
        #: The frame index (``glstream`` header, shared memory, ZeroMQ), or None (Blender, raw).
        self.index = index
        #: The render time in ns since the Unix epoch, or None where the header has none.
        self.timestamp_ns = timestamp_ns
        #: The pixel format's name: rgba8, bgra8, rgb8, gray8 or depth32f.
        self.format = format
        #: How the frame travelled: none, qoi, zstd, lz4 or jpeg.
        self.codec = codec
        #: The header it came with: glstream, blender, blender32, raw or shm.
        self.header = header
        #: The control request (``glstream --control``) this frame answers: 0 for none, None
        #: where the header has no room for it (Blender, raw).
        self.request_id = request_id
        self._owner = owner  # what the pixels live in (an iceoryx2 sample, a zmq.Frame, a buffer)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    def copy(self) -> "Frame":
        """A frame with its own (writable, contiguous, top-down) copy of the pixels, valid for as
        long as you keep it."""
        return Frame(
            np.array(self.pixels, copy=True, order="C"),
            self.index,
            self.timestamp_ns,
            self.format,
            self.codec,
            self.header,
            None,
            self.request_id,
        )

    def __repr__(self) -> str:
        return (
            f"<glstream.Frame index={self.index} {self.width}x{self.height} {self.format} "
            f"codec={self.codec}>"
        )


def pixels_of(buffer: Any, info: FrameInfo) -> np.ndarray:
    """The (height, width, channels) top-down view of a frame's raw bytes."""
    fmt = info.format
    array = np.frombuffer(buffer, fmt.dtype, info.width * info.height * fmt.channels)
    array = array.reshape(info.height, info.width, fmt.channels)
    return array if info.top_down else array[::-1]


class Stream:
    """An open stream: iterate over it for :class:`Frame` objects (iteration stops when the
    producer ends the stream at a frame boundary), or call :meth:`read`. A context manager;
    :meth:`close` releases the connection, the shared-memory sample or the ZeroMQ socket.

    Taking a frame ends the previous one's pixels (see :class:`Frame`)."""

    def __init__(self, source: Any, url: str, timeout: Optional[float]) -> None:
        self._source = source
        self.url = url
        self.timeout = timeout

    def read(self) -> Optional[Frame]:
        """The next frame; None once the stream has ended cleanly. Raises
        :class:`glstream.Timeout` when no whole frame arrives within ``timeout`` seconds,
        :class:`glstream.ProtocolError` on anything that is not a frame,
        :class:`glstream.Closed` when the producer goes away mid-frame."""
        if self._source is None:
            raise Error(f"{self.url}: the stream is closed")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        return self._source.next(deadline)

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read()
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        """Closes the stream; the last frame's pixels are no longer valid after this."""
        if self._source is not None:
            source, self._source = self._source, None
            source.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._source is None else "open"
        return f"<glstream.Stream {self.url} {state}>"


def open(
    url: str,
    header: str = "auto",
    timeout: Optional[float] = None,
    pattern: str = "pull",
    width: Optional[int] = None,
    height: Optional[int] = None,
    format: Optional[str] = None,
    top_down: bool = False,
) -> Stream:
    """Opens a glstream stream and returns a :class:`Stream` of :class:`Frame` objects.

    ``url``:
      - ``tcp://HOST:PORT`` and ``unix:///PATH``: the socket stream (``glstream --port``,
        ``--unix``), with any ``--header``;
      - ``shm://SERVICE``: the iceoryx2 shared-memory service (``glstream --shm SERVICE``),
        zero-copy; needs the ``[shm]`` extra. Waits for the service to appear for ``timeout``
        seconds (10 when ``timeout`` is None);
      - ``zmq+tcp://HOST:PORT`` and ``zmq+ipc:///PATH``: connects a ZeroMQ PULL socket
        (``pattern="pull"``) or SUB socket (``pattern="sub"``, every frame) to a
        ``glstream --zmq-bind`` producer; needs the ``[zmq]`` extra. A ZeroMQ stream has no end
        of its own: iteration stops only on a timeout or close().

    ``header`` (sockets only; shared memory and ZeroMQ always carry glstream's own):
      - ``"auto"``: told from the first frame: glstream (magic ``GLST``, v1 or the compressed v2),
        Blender (u64 length, u16 height, u16 width) or Blender32 (u32 length): the sizes must
        agree (length = width x height x bytes per pixel), and the two Blender layouts cannot be
        mistaken for each other. A raw stream cannot be told apart: use ``"raw"``.
      - ``"glstream"``, ``"blender"``, ``"blender32"``: that header only;
      - ``"raw"``: bare pixels; give ``width``, ``height`` and ``format`` (default rgba8).

    ``format``: for the Blender headers, which carry no format: 4 bytes a pixel is rgba8 unless
    ``format`` says ``"bgra8"`` or ``"depth32f"`` (3 is rgb8, 1 gray8). ``top_down``: for the
    headers that cannot say their row order (blender, blender32, raw), whether the producer
    sends rows top-down (``glstream --flip``); the glstream header says it itself.

    ``timeout``: seconds for one whole frame (None: wait for ever); :class:`glstream.Timeout`
    when it passes.
    """
    if header not in HEADERS:
        raise ValueError(f"header={header!r}: expected one of {', '.join(HEADERS)}")
    if pattern not in ("pull", "sub"):
        raise ValueError(f"pattern={pattern!r}: expected 'pull' or 'sub'")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout={timeout!r}: expected a number of seconds > 0, or None")
    fmt: Optional[Format] = None
    if format is not None:
        try:
            fmt = BY_NAME[format]
        except KeyError:
            raise ValueError(f"format={format!r}: expected one of {', '.join(BY_NAME)}") from None
    if header == "raw":
        if not width or not height or width < 0 or height < 0:
            raise ValueError('header="raw" needs width= and height= (the stream carries no sizes)')
        fmt = fmt or BY_NAME["rgba8"]
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r}: expected SCHEME://..., e.g. tcp://127.0.0.1:9000")
    if scheme in ("tcp", "unix"):
        from ._sockets import SocketSource, connect

        sock = connect(scheme, rest, url, timeout)
        source: Any = SocketSource(sock, header, fmt, width, height, top_down)
    elif scheme == "shm":
        _only_own_header(url, header)
        from ._shm import ShmSource

        source = ShmSource(rest, 10.0 if timeout is None else timeout)
    elif scheme in ("zmq+tcp", "zmq+ipc"):
        _only_own_header(url, header)
        from ._zmq import ZmqSource

        source = ZmqSource(scheme[4:] + "://" + rest, pattern)
    else:
        raise ValueError(
            f"{url!r}: unknown scheme {scheme!r} (tcp, unix, shm, zmq+tcp or zmq+ipc)"
        )
    return Stream(source, url, timeout)


def _only_own_header(url: str, header: str) -> None:
    if header not in ("auto", "glstream"):
        raise ValueError(f"{url}: carries glstream's own header; header={header!r} does not apply")
