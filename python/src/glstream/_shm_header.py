"""The iceoryx2 user header of ``glstream --shm``, as a ctypes structure (no iceoryx2 needed to
import it)."""

from __future__ import annotations

import ctypes

__all__ = ["FrameHeader"]


class FrameHeader(ctypes.Structure):
    """glstream's per-frame iceoryx2 user header, ``glstream::FrameHeader``: ``#[repr(C)]``, 48
    bytes, native byte order (docs/outputs.md)."""

    _fields_ = [
        ("frame_index", ctypes.c_uint64),
        ("timestamp_ns", ctypes.c_uint64),  # render time, ns since the Unix epoch
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("format", ctypes.c_uint32),  # 1 rgba8, 2 bgra8, 3 rgb8, 4 gray8, 5 depth32f
        ("flags", ctypes.c_uint32),  # bit 0: rows top-down (glstream --flip)
        ("stride", ctypes.c_uint32),  # bytes per row
        ("reserved", ctypes.c_uint32),
        ("request_id", ctypes.c_uint64),  # the control request this frame answers, 0 for none
    ]

    @staticmethod
    def type_name() -> str:
        return "glstream::FrameHeader"  # what iceoryx2 compares with glstream's type
