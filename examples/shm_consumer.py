#!/usr/bin/env python3
"""Reads the frames of `glstream --shm SERVICE` from shared memory as numpy arrays, without
copying them, and prints the frame rate once a second.

    pip install "./python[shm]"               # the glstream package, with iceoryx2==0.10.0
    glstream --shm glstream/frames &
    python3 examples/shm_consumer.py glstream/frames

Options: --frames N stops after N frames; --verify-pattern decodes every frame of
`glstream --scene pattern` (docs/scenes.md, "Pattern layout") and fails on a frame that does not
decode (a torn frame would not) or that comes out of order; --hold-ms MS holds each frame (its
shared-memory sample) that long, as a slow consumer would. It ends when glstream does, and says
what it received.
"""

import argparse
import sys
import time

try:
    import glstream
    from glstream import FrameHeader  # noqa: F401  (the header's layout, for other scripts)
except ImportError as e:
    sys.exit(f'{e}: install the package: pip install "./python[shm]" (from the repository root)')

BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
        (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]


def decode_pattern(image):
    """The frame index `glstream --scene pattern` drew into an rgba8 image with rows bottom-up,
    from docs/scenes.md's "Pattern layout"; None if it is not a whole pattern frame."""
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

    received, first, last, dropped = 0, None, None, 0
    started = second = None
    per_second = 0
    size = None
    try:
        # Waits up to --timeout for the service, then for each frame; iteration ends when
        # glstream has exited and every frame it sent was read.
        with glstream.open("shm://" + args.service, timeout=args.timeout) as stream:
            for frame in stream:
                if args.frames is not None and received >= args.frames:
                    break
                # frame.pixels is a view of the sample in shared memory (rows top-down): valid
                # until the next frame is taken, when the sample goes back to glstream.
                size = (frame.width, frame.height)
                index = frame.index
                if args.verify_pattern:
                    if frame.format != "rgba8":
                        sys.exit("--verify-pattern reads rgba8 frames (glstream --format rgba8)")
                    decoded = decode_pattern(frame.pixels[::-1])
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
                received += 1
                per_second += 1
                now = time.monotonic()
                if now - second >= 1.0:
                    print(f"{per_second / (now - second):.1f} fps, frame {last}", flush=True)
                    second, per_second = now, 0
                if args.frames is not None and received >= args.frames:
                    break
    except glstream.Timeout:
        sys.exit(f"no frame within {args.timeout} s after {received} frames")
    except glstream.Error as e:
        sys.exit(str(e))
    except KeyboardInterrupt:
        pass  # interrupted: say what arrived
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
