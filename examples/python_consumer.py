#!/usr/bin/env python3
"""The Python quick start: read any glstream output with the glstream package and print what
arrives, once a second and at the end.

    glstream --port 9000 &                       # or --unix, --shm, --zmq-bind, any --header
    pip install "./python[all]"
    python examples/python_consumer.py tcp://127.0.0.1:9000

URLs: tcp://HOST:PORT, unix:///PATH, shm://SERVICE, zmq+tcp://HOST:PORT, zmq+ipc:///PATH.
--frames N stops after N frames; --save FILE.npy keeps the last frame (frame.copy(): a frame's
pixels are only valid until the next one is taken).
"""

import argparse
import sys
import time

import numpy as np

try:
    import glstream
except ImportError as e:
    sys.exit(f'{e}: install the package: pip install "./python[all]" (from the repository root)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="tcp://127.0.0.1:9000")
    parser.add_argument("--frames", type=int, help="stop after this many frames")
    parser.add_argument("--header", default="auto", choices=glstream.HEADERS)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a frame")
    parser.add_argument("--save", metavar="FILE.npy", help="save the last frame's pixels")
    args = parser.parse_args()

    count, kept, started, second, per_second = 0, None, time.monotonic(), time.monotonic(), 0
    try:
        with glstream.open(args.url, header=args.header, timeout=args.timeout) as stream:
            for frame in stream:
                count += 1
                per_second += 1
                if count == 1:
                    print(f"{frame.width}x{frame.height} {frame.format}, header {frame.header}, "
                          f"codec {frame.codec}; top-left pixel {frame.pixels[0, 0]}", flush=True)
                now = time.monotonic()
                if now - second >= 1.0:
                    print(f"{per_second / (now - second):.1f} fps, frame {frame.index}", flush=True)
                    second, per_second = now, 0
                if args.save:
                    kept = frame.copy()
                if args.frames is not None and count >= args.frames:
                    break
    except glstream.Error as e:
        sys.exit(f"{args.url}: {e}")
    except KeyboardInterrupt:
        pass
    seconds = time.monotonic() - started
    print(f"received {count} frames in {seconds:.2f} s")
    if kept is not None:
        np.save(args.save, kept.pixels)
        print(f"saved frame {kept.index} to {args.save}")


if __name__ == "__main__":
    main()
