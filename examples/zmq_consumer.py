#!/usr/bin/env python3
"""Receive glstream frames over ZeroMQ with the glstream package, without copying the payload.

    pip install "./python[zmq]"
    glstream --zmq-bind tcp://127.0.0.1:5555 --frames 100 &
    python examples/zmq_consumer.py --connect tcp://127.0.0.1:5555 --frames 100

Every frame is one two-part message, [glstream header, payload] (docs/outputs.md, "Message
parts"); `glstream.open("zmq+tcp://...")` checks both and gives frame.pixels as a numpy view of
libzmq's own message memory: the pixels are never copied in Python (compressed frames,
`--compress`, are decoded into a buffer instead).

Prints one JSON line at the end: frames, their indices in arrival order, size, format, fps, and
with --checksum the byte sum of each frame's payload.
"""
import argparse
import json
import signal
import sys
import time

import numpy as np

try:
    import glstream
except ImportError as e:
    sys.exit(f'{e}: install the package: pip install "./python[zmq]" (from the repository root)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", choices=["pull", "sub"], default="pull")
    parser.add_argument("--connect", required=True, metavar="ENDPOINT",
                        help="tcp://HOST:PORT or ipc:///PATH of a glstream --zmq-bind producer")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (0: until a signal)")
    parser.add_argument("--delay-ms", type=float, default=0, help="sleep per frame: a slow consumer")
    parser.add_argument("--timeout", type=float, default=60, help="fail if no frame for this long (s)")
    parser.add_argument("--checksum", action="store_true", help="report each payload's byte sum")
    args = parser.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    indices, sums, zero_copy = [], {}, True
    shape = None
    first = last_frame = None
    url = "zmq+" + args.connect
    try:
        with glstream.open(url, pattern=args.pattern, timeout=args.timeout) as stream:
            while not stop and (not args.frames or len(indices) < args.frames):
                frame = stream.read()
                zero_copy &= frame.codec != "none" or not frame.pixels.flags.owndata
                last_frame = time.monotonic()
                first = first or last_frame
                shape = frame.pixels.shape
                indices.append(frame.index)
                if args.checksum:
                    sums[frame.index] = int(frame.pixels.sum(dtype=np.uint64))
                if args.delay_ms:
                    time.sleep(args.delay_ms / 1000)
    except glstream.Timeout:
        print(f"no frame for {args.timeout} s", file=sys.stderr)
        return 1
    except glstream.Error as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    seconds = max((last_frame or 0) - (first or 0), 1e-9)
    summary = {
        "frames": len(indices),
        "indices": indices,
        "height": shape[0] if shape else 0,
        "width": shape[1] if shape else 0,
        "channels": shape[2] if shape else 0,
        "fps": round((len(indices) - 1) / seconds, 1) if len(indices) > 1 else 0,
        "zero_copy": zero_copy,
    }
    if args.checksum:
        summary["byte_sums"] = {str(k): v for k, v in sums.items()}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
