#!/usr/bin/env python3
"""Receive glstream frames over ZeroMQ with pyzmq and numpy, without copying the payload.

    glstream --zmq-bind tcp://127.0.0.1:5555 --frames 100 &
    python examples/zmq_consumer.py --connect tcp://127.0.0.1:5555 --frames 100

Every frame is one two-part message: part 1 is the 56-byte glstream v1 header, part 2 the
payload (README.md, "Scaling out"). `recv_multipart(copy=False)` returns zmq.Frame objects whose
buffers are libzmq's own memory, and `np.frombuffer` views that memory: the pixels are never
copied in Python (pyzmq copies messages under 64 KiB, so the header is, which is fine).

Prints one JSON line at the end: frames, their indices in arrival order, size, format, fps, and
with --checksum the byte sum of each frame's payload (rows as sent).
Needs: pip install pyzmq numpy.
"""
import argparse
import json
import signal
import struct
import sys
import time

import numpy as np
import zmq

GLST = struct.Struct("<4sHHIIIIIIQQQ")  # the 56-byte glstream v1 header, little-endian
assert GLST.size == 56
# format code -> (channels, dtype)
FORMATS = {1: (4, np.uint8), 2: (4, np.uint8), 3: (3, np.uint8), 4: (1, np.uint8), 5: (1, "<f4")}


def decode(header, payload):
    """Checks one [header, payload] message; returns (index, stamp_ns, image view)."""
    if len(header) != GLST.size:
        raise ValueError(f"header part of {len(header)} bytes, expected 56")
    (magic, version, size, width, height, fmt, flags, stride, _,
     index, stamp_ns, length) = GLST.unpack(header)
    if magic != b"GLST" or version != 1 or size != GLST.size:
        raise ValueError("not a glstream v1 header")
    if fmt not in FORMATS or length != stride * height or len(payload) != length:
        raise ValueError(f"frame {index}: payload of {len(payload)} bytes, header says {length}")
    channels, dtype = FORMATS[fmt]
    # A read-only view of libzmq's buffer: valid while the zmq.Frame lives.
    pixels = np.frombuffer(payload, dtype).reshape(height, width, channels)
    image = pixels if flags & 1 else pixels[::-1]  # rows top-down; still a view, no copy
    return index, stamp_ns, image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", choices=["pull", "sub"], default="pull")
    parser.add_argument("--connect", action="append", default=[], metavar="ENDPOINT")
    parser.add_argument("--bind", action="append", default=[], metavar="ENDPOINT")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (0: until a signal)")
    parser.add_argument("--hwm", type=int, default=2, help="receive high-water mark, frames")
    parser.add_argument("--delay-ms", type=float, default=0, help="sleep per frame: a slow consumer")
    parser.add_argument("--timeout", type=float, default=60, help="fail if no frame for this long (s)")
    parser.add_argument("--checksum", action="store_true", help="report each payload's byte sum")
    args = parser.parse_args()
    if not args.connect and not args.bind:
        parser.error("give --connect or --bind")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    context = zmq.Context()
    sock = context.socket(zmq.SUB if args.pattern == "sub" else zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, args.hwm)  # options before bind/connect
    sock.setsockopt(zmq.LINGER, 0)
    if args.pattern == "sub":
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # every frame
    for endpoint in args.bind:
        sock.bind(endpoint)
    for endpoint in args.connect:
        sock.connect(endpoint)

    indices, sums, zero_copy = [], {}, True
    shape = None
    first = last_frame = None
    started = time.monotonic()
    while not stop and (not args.frames or len(indices) < args.frames):
        if not sock.poll(100):
            if time.monotonic() - (last_frame or started) > args.timeout:
                print(f"no frame for {args.timeout} s", file=sys.stderr)
                return 1
            continue
        parts = sock.recv_multipart(copy=False)  # zmq.Frame objects: no copy of the payload
        if len(parts) != 2:
            print(f"a message of {len(parts)} parts, expected 2", file=sys.stderr)
            return 1
        header, payload = parts
        index, _stamp_ns, image = decode(header.bytes, payload.buffer)
        zero_copy &= not image.flags.owndata
        last_frame = time.monotonic()
        first = first or last_frame
        shape = image.shape
        indices.append(index)
        if args.checksum:
            sums[index] = int(image.sum(dtype=np.uint64))
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
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
