"""The Python consumer of the head-to-head: what a Blender consumer does, done well.
struct.unpack of the 12-byte header, recv_into a reused buffer, np.frombuffer. It reads until the
producer closes and prints one line: frames, and fps over the frames after the warm-up.

    python consumer.py HOST:PORT WARMUP
"""
import socket
import struct
import sys
import time

import numpy as np

host, port = sys.argv[1].rsplit(":", 1)
warmup = int(sys.argv[2])
sock = socket.create_connection((host, int(port)))
header = bytearray(12)
buffer = None
frames, started = 0, None


def fill(view):
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return got
        got += n
    return got


while True:
    if fill(memoryview(header)) < 12:
        break
    length, height, width = struct.unpack("<QHH", header)
    if buffer is None or len(buffer) != length:
        buffer = bytearray(length)
    if fill(memoryview(buffer)) < length:
        break
    image = np.frombuffer(buffer, np.uint8).reshape(height, width, 4)
    frames += 1
    if frames == warmup:
        started = time.perf_counter()
elapsed = time.perf_counter() - started if started else 0.0
measured = frames - warmup
print("frames %d fps %.1f" % (frames, measured / elapsed if elapsed > 0 else 0.0), flush=True)
