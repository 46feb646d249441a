"""Pixel formats: the codes the headers carry, bytes per pixel, numpy shapes and dtypes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Format", "FORMATS", "BY_NAME", "MAX_BYTES"]

#: The largest payload (raw or encoded) glstream accepts before allocating: 1 GiB.
MAX_BYTES = 1 << 30


class Format(NamedTuple):
    code: int
    name: str
    channels: int
    dtype: np.dtype

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.dtype.itemsize


_U8 = np.dtype(np.uint8)
_F32 = np.dtype("<f4")

FORMATS = {
    1: Format(1, "rgba8", 4, _U8),
    2: Format(2, "bgra8", 4, _U8),
    3: Format(3, "rgb8", 3, _U8),
    4: Format(4, "gray8", 1, _U8),
    5: Format(5, "depth32f", 1, _F32),
}
BY_NAME = {f.name: f for f in FORMATS.values()}
