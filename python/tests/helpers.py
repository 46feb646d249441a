"""Helpers for the tests: the real producer, reference frames from the real binary, fake peers
that send what a test needs, and a writer of glstream v2 (compressed) frames built from the
header-v2 spec with the reference encoders."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from io import BytesIO
from typing import Callable, List, Optional, Sequence

import numpy as np

BIN = os.environ.get("GLSTREAM_BIN", "glstream")
#: Generous: the machines are shared, and llvmpipe on two cores is slow.
TIMEOUT = 120.0
W, H = 96, 64

FORMAT_CODES = {"rgba8": 1, "bgra8": 2, "rgb8": 3, "gray8": 4, "depth32f": 5}
CHANNELS = {"rgba8": 4, "bgra8": 4, "rgb8": 3, "gray8": 1, "depth32f": 1}
DTYPES = {"rgba8": np.uint8, "bgra8": np.uint8, "rgb8": np.uint8, "gray8": np.uint8,
          "depth32f": np.dtype("<f4")}
CODEC_CODES = {"none": 0, "qoi": 1, "zstd": 2, "lz4": 3, "jpeg": 4}


def env() -> dict:
    e = dict(os.environ)
    e.pop("RUST_LOG", None)
    return e


class Producer:
    """A running glstream; its stdout lines are collected, and start() waits for the line that
    says it is ready."""

    def __init__(self, args: List[str], ready: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
        )
        self.lines: List[str] = []
        self.stderr_text: List[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.ready_line = self.wait_line(ready)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append(None)  # type: ignore[arg-type]  # EOF marker
            self._changed.notify_all()

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self.stderr_text.append(raw.decode(errors="replace"))
                self._changed.notify_all()

    def wait_log(self, needle: str) -> None:
        """Waits until glstream has logged ``needle`` (on stderr; -v for its debug lines)."""
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while needle not in self.stderr():
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and needle not in self.stderr():
                    raise AssertionError(f"glstream {self.args} never logged {needle!r}:\n"
                                         f"{self.stderr()}")
                self._changed.wait(min(left, 0.5))

    def wait_line(self, prefix: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while True:
                for line in self.lines:
                    if line is None:
                        raise AssertionError(
                            f"glstream {self.args} ended before printing {prefix!r}; stderr:\n"
                            f"{self.stderr()}"
                        )
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"glstream {self.args} printed no {prefix!r} line")
                self._changed.wait(left)

    def endpoint(self, prefix: str = "listening on ") -> str:
        """What the ready line names: 127.0.0.1:PORT, unix:/path, tcp://..., ipc://..."""
        return self.wait_line(prefix)[len(prefix):].split()[0]

    def stderr(self) -> str:
        return "".join(self.stderr_text)

    def wait(self) -> int:
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"glstream {self.args} did not exit; stderr:\n{self.stderr()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run(*args: str) -> bytes:
    """Runs glstream to completion; its stdout."""
    done = subprocess.run([BIN, *args], capture_output=True, timeout=TIMEOUT, env=env())
    assert done.returncode == 0, f"glstream {args} failed:\n{done.stderr.decode(errors='replace')}"
    return done.stdout


def reference_frames(count: int, fmt: str = "rgba8", *extra: str, w: int = W, h: int = H
                     ) -> List[np.ndarray]:
    """Frames 0..count-1 as the real binary sends them bare (`--stdout --header raw`), rows
    bottom-up as on the wire, turned into (h, w, c) arrays with rows top-down."""
    data = run("--stdout", "--header", "raw", "--format", fmt, "--frames", str(count),
               "--width", str(w), "--height", str(h), *extra)
    size = w * h * CHANNELS[fmt] * np.dtype(DTYPES[fmt]).itemsize
    assert len(data) == count * size, (len(data), count, size)
    return [wire_to_image(data[i * size:(i + 1) * size], fmt, w, h) for i in range(count)]


def wire_to_image(data: bytes, fmt: str, w: int, h: int, top_down: bool = False) -> np.ndarray:
    image = np.frombuffer(data, DTYPES[fmt]).reshape(h, w, CHANNELS[fmt])
    return image if top_down else image[::-1]


def service(name: str) -> str:
    """An iceoryx2 service name no other test (or test run) uses."""
    return f"glstream-pytest/{name}-{os.getpid()}"


def scratch_path(name: str) -> str:
    """A short path for a socket file (Unix socket paths are limited to 107 bytes)."""
    return os.path.join(tempfile.mkdtemp(prefix="glspy-"), name)


class FakeServer:
    """A TCP server in a thread that accepts one client and runs ``serve(conn)`` on it, then
    closes the connection (unless ``serve`` returns having set ``hold``)."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "tcp://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._serve = serve
        self.release = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn:
                self._serve(conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on what it was sent: what a bad-frame test expects
        except BaseException as e:  # reported by close()
            self.error = e
        finally:
            self._listener.close()

    def close(self) -> None:
        self.release.set()
        self._thread.join(TIMEOUT)
        if self.error is not None:
            raise self.error


def sending(data: bytes, hold: bool = False):
    """A FakeServer that sends ``data`` and then closes the connection, or holds it open until
    the test releases it (``hold``)."""

    def serve(conn: socket.socket) -> None:
        conn.sendall(data)
        if hold:
            server.release.wait(TIMEOUT)

    server = FakeServer(serve)
    return server


# ---- glstream headers, written from the specs (docs/protocol.md, notes/header-v2) -------------

V1 = struct.Struct("<4sHHIIIIIIQQQ")
V2 = struct.Struct("<4sHHIIIIIIQQQQQII")


def v1_header(w: int, h: int, fmt: str, index: int = 0, stamp: int = 0, top_down: bool = False,
              stride: Optional[int] = None, length: Optional[int] = None) -> bytes:
    bpp = CHANNELS[fmt] * np.dtype(DTYPES[fmt]).itemsize
    stride = w * bpp if stride is None else stride
    length = stride * h if length is None else length
    return V1.pack(b"GLST", 1, 56, w, h, FORMAT_CODES[fmt], int(top_down), stride, 0, index,
                   stamp, length)


def encode_strip(codec: str, rows: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """One strip (rows, as on the wire: (n, w, c)) with the reference encoder of ``codec``."""
    if codec == "none":
        return rows.tobytes()
    if codec == "qoi":
        import qoi

        return bytes(qoi.encode(np.ascontiguousarray(rows)))
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(write_content_size=True).compress(rows.tobytes())
    if codec == "lz4":
        import lz4.block

        return lz4.block.compress(rows.tobytes(), store_size=False)
    if codec == "jpeg":
        from PIL import Image

        if fmt == "gray8":
            image = Image.fromarray(np.ascontiguousarray(rows[:, :, 0]), "L")
        else:
            rgb = rows[:, :, :3] if fmt != "bgra8" else rows[:, :, 2::-1]
            image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        out = BytesIO()
        image.save(out, "JPEG", quality=quality)
        return out.getvalue()
    raise ValueError(codec)


def v2_frame(wire: np.ndarray, fmt: str, codec: str, rows_per_strip: int, index: int = 0,
             stamp: int = 0, top_down: bool = False, **override) -> bytes:
    """A whole v2 frame: header, strip table, strips. ``wire`` is (h, w, c) in wire row order.
    ``override`` replaces header fields (strips, rows, header_length, payload_length,
    raw_length, codec_code, format, strip_lengths, payload, request_id) to build bad frames."""
    h, w = wire.shape[:2]
    bpp = CHANNELS[fmt] * np.dtype(DTYPES[fmt]).itemsize
    stride = w * bpp
    rows = override.get("rows", rows_per_strip)
    strips = [encode_strip(codec, wire[i:i + rows_per_strip], fmt)
              for i in range(0, h, rows_per_strip)]
    lengths = override.get("strip_lengths", [len(s) for s in strips])
    count = override.get("strips", len(lengths))
    payload = override.get("payload", b"".join(strips))
    header = V2.pack(
        b"GLST", 2, override.get("header_length", 80 + 4 * len(lengths)), w, h,
        override.get("format", FORMAT_CODES[fmt]), int(top_down), stride,
        override.get("codec_code", CODEC_CODES[codec]), index, stamp,
        override.get("payload_length", len(payload)), override.get("raw_length", stride * h),
        override.get("request_id", 0), count, rows,
    ) + struct.pack(f"<{len(lengths)}I", *lengths)
    return header + payload


# ---- the pattern scene (docs/scenes.md), for frames whose index is in the pixels --------------

BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
        (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]


def decode_pattern(image: np.ndarray) -> Optional[int]:
    """The frame index `glstream --scene pattern` drew into an rgba8 image (rows top-down, as
    glstream.Frame.pixels has them); None if it is not a whole pattern frame."""
    image = image[::-1]  # the layout is described bottom-up
    height, width = image.shape[:2]
    grid = height * 3 // 4

    def centre(i: int, count: int, length: int) -> int:
        return (2 * i + 1) * length // (2 * count)

    def near(rgb: Sequence[int], target: Sequence[int]) -> bool:
        return all(abs(int(v) - t) < 64 for v, t in zip(rgb, target))

    bar_y = grid + (height - grid) // 2
    for column, bar in enumerate(BARS):
        if not near(image[bar_y, centre(column, 8, width), :3], bar):
            return None
    white = []
    for cell in range(64):
        column, row_from_bottom = cell % 8, 7 - cell // 8
        rgb = image[centre(row_from_bottom, 8, grid), centre(column, 8, width), :3]
        if near(rgb, (255, 255, 255)):
            white.append(True)
        elif near(rgb, (0, 0, 0)):
            white.append(False)
        else:
            return None
    index = 0
    for bit, inverted in zip(white[:32], white[32:]):
        if bit == inverted:
            return None
        index = (index << 1) | bit
    return index
