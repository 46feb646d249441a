#!/usr/bin/env python3
"""Reads the frames of `glstream --shm SERVICE` from shared memory as numpy arrays, without
copying them, and prints the frame rate once a second.

    pip install iceoryx2==0.10.0 numpy       # the same iceoryx2 version as glstream's
    glstream --shm glstream/frames &
    python3 examples/shm_consumer.py glstream/frames

Options: --frames N stops after N frames; --verify-pattern decodes every frame of
`glstream --scene pattern` (README, "Pattern layout") and fails on a frame that does not decode
(a torn frame would not) or that comes out of order; --hold-ms MS holds each sample that long, as
a slow consumer would. It ends when glstream does, and says what it received.
"""

import argparse
import ctypes
import sys
import time

import iceoryx2 as iox2
import numpy as np


class FrameHeader(ctypes.Structure):
    """glstream's per-frame header: #[repr(C)] glstream::FrameHeader in Rust, 48 bytes."""

    _fields_ = [
        ("frame_index", ctypes.c_uint64),
        ("timestamp_ns", ctypes.c_uint64),  # render time, ns since the Unix epoch
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("format", ctypes.c_uint32),  # 1 rgba8, 2 bgra8, 3 rgb8, 4 gray8, 5 depth32f
        ("flags", ctypes.c_uint32),  # bit 0: rows top-down (glstream --flip)
        ("stride", ctypes.c_uint32),  # bytes per row
        ("reserved", ctypes.c_uint32),
        ("request_id", ctypes.c_uint64),
    ]

    @staticmethod
    def type_name():
        return "glstream::FrameHeader"  # what iceoryx2 compares with glstream's type


# Channels and element type of each format code.
FORMATS = {1: (4, np.uint8), 2: (4, np.uint8), 3: (3, np.uint8), 4: (1, np.uint8), 5: (1, np.float32)}


def open_service(node, name, timeout_s):
    """Opens the service with only the payload and header types (glstream chooses the rest),
    waiting up to timeout_s for glstream to create it. Never open_or_create: a service created
    by a consumer would have settings glstream does not expect."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return (
                node.service_builder(iox2.ServiceName.new(name))
                .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                .user_header(FrameHeader)
                .open()
            )
        except iox2.PublishSubscribeOpenError as e:
            if time.monotonic() > deadline:
                sys.exit(f"cannot open {name}: {e!r} (is `glstream --shm {name}` running?)")
            time.sleep(0.05)


def as_image(header, payload):
    """The frame as a height x width x channels numpy array over the sample's shared memory (no
    copy): valid only until the sample is released. Rows are bottom-up (OpenGL order) unless
    header.flags & 1."""
    channels, dtype = FORMATS[header.format]
    pixels = np.frombuffer(payload.as_memory_view(), dtype=np.uint8)
    rows = pixels[: header.stride * header.height].reshape(header.height, header.stride)
    return rows.view(dtype).reshape(header.height, header.width, channels)


BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
        (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]


def decode_pattern(image):
    """The frame index `glstream --scene pattern` drew into an rgba8 image with rows bottom-up,
    from README's "Pattern layout"; None if it is not a whole pattern frame."""
    height, width = image.shape[:2]
    if width < 64 or height < 32:
        return None
    grid = height * 3 // 4

    def centre(i, count, length):
        return (2 * i + 1) * length // (2 * count)

    def near(rgb, target):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", nargs="?", default="glstream/frames")
    parser.add_argument("--frames", type=int, help="stop after this many frames")
    parser.add_argument("--verify-pattern", action="store_true")
    parser.add_argument("--hold-ms", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame")
    args = parser.parse_args()

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = open_service(node, args.service, args.timeout)
    subscriber = service.subscriber_builder().create()

    received, first, last, dropped = 0, None, None, 0
    started = second = None
    per_second = 0
    waiting_since = time.monotonic()
    publisher_seen = False
    size = None
    try:
        while args.frames is None or received < args.frames:
            # Looked at before receiving: a glstream that sends its last frame and exits between
            # the two must not be taken for one that has nothing more to send.
            publishers = service.dynamic_config.number_of_publishers
            publisher_seen |= publishers > 0
            sample = subscriber.receive()
            if sample is None:
                if publisher_seen and publishers == 0:
                    break  # glstream has exited and every frame it sent was read
                if time.monotonic() - waiting_since > args.timeout:
                    sys.exit(f"no frame within {args.timeout} s after {received} frames")
                node.wait(iox2.Duration.from_micros(200))  # raises on SIGINT/SIGTERM
                continue
            header = sample.user_header().contents
            image = as_image(header, sample.payload())  # a view of shared memory, no copy
            size = (header.width, header.height)
            index = header.frame_index
            if args.verify_pattern:
                if header.format != 1:
                    sys.exit("--verify-pattern reads rgba8 frames (glstream --format rgba8)")
                decoded = decode_pattern(image[::-1] if header.flags & 1 else image)
                if decoded is None:
                    sys.exit(f"frame {index}: not a whole pattern frame (torn?)")
                if decoded != index % 2**32:
                    sys.exit(f"pattern says frame {decoded}, header says {index}")
            if last is not None:
                if index <= last:
                    sys.exit(f"frame {index} arrived after frame {last}: out of order")
                dropped += index - last - 1
            if first is None:
                first, started, second = index, time.monotonic(), time.monotonic()
            last = index
            if args.hold_ms:
                time.sleep(args.hold_ms / 1000)
            # The views end before the sample goes back to glstream.
            del image, header
            sample.delete()
            received += 1
            per_second += 1
            waiting_since = now = time.monotonic()
            if now - second >= 1.0:
                print(f"{per_second / (now - second):.1f} fps, frame {last}", flush=True)
                second, per_second = now, 0
    except iox2.NodeWaitFailure:
        pass  # interrupted
    seconds = time.monotonic() - started if started is not None else 0.0
    width, height = size or (0, 0)
    print(f"received {received} frames {width}x{height} in {seconds:.2f} s: "
          f"{received / max(seconds, 1e-9):.1f} fps")
    if first is not None:
        print(f"frames {first}..={last} in order, {dropped} dropped")
    if args.frames is not None and received < args.frames:
        sys.exit(f"the stream ended after {received} of {args.frames} frames")


if __name__ == "__main__":
    main()
