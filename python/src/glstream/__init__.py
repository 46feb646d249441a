"""glstream: read the frames of a glstream producer as numpy arrays, from any of its outputs.

    import glstream

    with glstream.open("tcp://127.0.0.1:9000") as stream:   # header detected: glstream or Blender
        for frame in stream:
            frame.pixels        # numpy array (height, width, channels), rows top-down
            frame.index         # frame index, or None where the header has none (Blender)
            frame.timestamp_ns  # render time, or None

URLs: ``tcp://HOST:PORT``, ``unix:///PATH``, ``shm://SERVICE`` (iceoryx2, zero-copy; the
``[shm]`` extra), ``zmq+tcp://HOST:PORT`` and ``zmq+ipc:///PATH`` (the ``[zmq]`` extra).
Compressed streams (``glstream --compress``) are decoded with the ``[compress]`` extra.
A frame's pixels are valid until the next frame is taken; ``frame.copy()`` keeps one.

``glstream.Control(url)`` steers a producer started with ``--control`` (docs/control.md):
``control.send(camera={"eye": [3, 1, 2]})`` returns the answer, and the frame that answers
carries the request's id (``frame.request_id``).
"""

from ._control import Control
from ._errors import Closed, ConnectError, Error, ProtocolError, Timeout
from ._formats import MAX_BYTES
from ._shm_header import FrameHeader
from ._stream import HEADERS, Frame, Stream, open

__version__ = "0.1.0"

__all__ = [
    "open",
    "Control",
    "Stream",
    "Frame",
    "FrameHeader",
    "Error",
    "ProtocolError",
    "Timeout",
    "Closed",
    "ConnectError",
    "HEADERS",
    "MAX_BYTES",
    "__version__",
]
