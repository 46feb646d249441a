#!/usr/bin/env python3
"""Frames per second of `glstream.open` against the hand-written snippet it replaces, per
transport, in alternating rounds of one run (the snippets are the README's and
docs/outputs.md's: Blender header over TCP, the same over a Unix socket, iceoryx2 shared memory,
ZeroMQ PULL).

    cargo build --release && .venv/bin/pip install "./python[all]"
    .venv/bin/python bench/python_open.py                # 800x600, 400 frames, 5 rounds each

Each round starts a fresh `glstream --policy lossless --frames N` and reads all N frames in this
process; fps counts from the first frame to the last. Both consumers do the same per frame:
make the (height, width, 4) top-down array and read one pixel. The table shows the median of
the rounds, the package's fps relative to the snippet's (of the medians, and the median of each
round's ratio, whose two runs are back to back), and the consumer's own CPU time per
frame (this process's, connection setup included), which a loaded machine disturbs less than
fps: the producer, not the consumer, usually sets the pace.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import glstream

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Producer:
    def __init__(self, binary, args, ready):
        self.process = subprocess.Popen(
            [binary, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for line in self.process.stdout:
            if line.startswith(ready):
                self.endpoint = line[len(ready):].split()[0]
                return
        raise SystemExit(f"glstream {args} did not start")

    def finish(self):
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---- the hand-written snippets -----------------------------------------------------------


def snippet_socket(sock, frames):
    """README's Blender consumer (TCP) / docs/outputs.md's Unix one."""
    stream = sock.makefile("rb")
    stamps = []
    while True:
        header = stream.read(12)
        if len(header) < 12:
            break
        length, height, width = struct.unpack("<QHH", header)
        data = stream.read(length)
        frame = np.frombuffer(data, np.uint8).reshape(height, width, 4)
        image = frame[::-1]
        image[0, 0]
        stamps.append(time.perf_counter())
    return stamps


def snippet_tcp(endpoint, frames):
    host, port = endpoint.rsplit(":", 1)
    return snippet_socket(socket.create_connection((host, int(port))), frames)


def snippet_unix(endpoint, frames):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(endpoint[len("unix:"):])
    return snippet_socket(sock, frames)


def snippet_shm(endpoint, frames):
    """docs/outputs.md's shared-memory consumer (polls with node.wait)."""
    import iceoryx2 as iox2

    class FrameHeader(ctypes.Structure):
        _fields_ = [("frame_index", ctypes.c_uint64), ("timestamp_ns", ctypes.c_uint64),
                    ("width", ctypes.c_uint32), ("height", ctypes.c_uint32),
                    ("format", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                    ("stride", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                    ("request_id", ctypes.c_uint64)]

        @staticmethod
        def type_name():
            return "glstream::FrameHeader"

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = (node.service_builder(iox2.ServiceName.new(endpoint))
               .publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .user_header(FrameHeader)
               .open())
    subscriber = service.subscriber_builder().create()
    stamps = []
    while True:
        publishers = service.dynamic_config.number_of_publishers
        sample = subscriber.receive()
        if sample is None:
            if publishers == 0:
                break
            node.wait(iox2.Duration.from_micros(200))
            continue
        header = sample.user_header().contents
        pixels = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
        frame = pixels.reshape(header.height, header.width, 4)[::-1]
        frame[0, 0]
        del frame, pixels, header
        sample.delete()
        stamps.append(time.perf_counter())
    return stamps


def snippet_zmq(endpoint, frames):
    """docs/outputs.md's ZeroMQ consumer."""
    import zmq

    glst = struct.Struct("<4sHHIIIIIIQQQ")
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 2)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    stamps = []
    for _ in range(frames):
        header, payload = sock.recv_multipart(copy=False)
        (magic, version, size, width, height, fmt, flags, stride, _,
         index, stamp_ns, length) = glst.unpack(header.bytes)
        pixels = np.frombuffer(payload.buffer, np.uint8).reshape(height, width, 4)
        image = pixels if flags & 1 else pixels[::-1]
        image[0, 0]
        stamps.append(time.perf_counter())
    sock.close(0)
    return stamps


# ---- the package -------------------------------------------------------------------------


def package(url_of):
    def consume(endpoint, frames):
        stamps = []
        with glstream.open(url_of(endpoint)) as stream:
            for frame in stream:
                frame.pixels[0, 0]
                stamps.append(time.perf_counter())
                if len(stamps) == frames:
                    break
        return stamps

    return consume


TRANSPORTS = {
    # name: (producer args, ready prefix, snippet, package)
    "tcp (blender)": (["--port", "0"], "listening on ", snippet_tcp,
                      package(lambda e: "tcp://" + e)),
    "unix": (["--unix", "{sock}"], "listening on ", snippet_unix,
             package(lambda e: "unix://" + e[len("unix:"):])),
    "shm": (["--shm", "{service}"], "publishing on shm:", snippet_shm,
            package(lambda e: "shm://" + e)),
    "zmq (push/pull)": (["--zmq-bind", "tcp://127.0.0.1:*"], "zmq push listening on ",
                        snippet_zmq, package(lambda e: "zmq+" + e)),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glstream", default=os.path.join(REPO, "target/release/glstream"))
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--scene", default="pattern", help="pattern renders fastest")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="glsbench-")
    names = args.transports.split(",")
    results = {name: {"snippet": [], "glstream.open": []} for name in names}
    cpu = {name: {"snippet": [], "glstream.open": []} for name in names}
    for round_ in range(args.rounds):
        for name in names:
            produce, ready, snippet, open_ = TRANSPORTS[name]
            # Alternate which goes first, so that neither always gets the warmer machine.
            pair = [("snippet", snippet), ("glstream.open", open_)]
            for method, consume in pair if round_ % 2 == 0 else pair[::-1]:
                tag = f"{os.getpid()}-{round_}-{method[0]}"
                extra = [a.format(sock=os.path.join(scratch, f"{tag}.sock"),
                                  service=f"glstream-bench/{tag}") for a in produce]
                producer = Producer(args.glstream, [
                    *extra, "--policy", "lossless", "--frames", str(args.frames),
                    "--width", str(args.width), "--height", str(args.height),
                    "--scene", args.scene], ready)
                cpu_start = time.process_time()
                stamps = consume(producer.endpoint, args.frames)
                cpu_used = time.process_time() - cpu_start
                producer.finish()
                if len(stamps) != args.frames:
                    raise SystemExit(f"{name} {method}: {len(stamps)} of {args.frames} frames")
                fps = (len(stamps) - 1) / (stamps[-1] - stamps[0])
                results[name][method].append(fps)
                # The consumer's own CPU time per frame (this process only), setup included.
                cpu[name][method].append(cpu_used / len(stamps) * 1e6)
                print(f"round {round_ + 1} {name:16} {method:14} {fps:8.1f} fps "
                      f"{cpu[name][method][-1]:7.0f} us CPU/frame", file=sys.stderr, flush=True)
    print(f"\n{args.width}x{args.height} rgba8, --scene {args.scene}, {args.frames} frames a "
          f"round, median of {args.rounds} rounds")
    print("| transport | snippet fps | glstream.open fps | open / snippet | same-round ratio "
          "| snippet CPU/frame | open CPU/frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        a = statistics.median(results[name]["snippet"])
        b = statistics.median(results[name]["glstream.open"])
        # Each round's two runs are back to back: their ratio cancels the load that varies
        # from round to round.
        paired = statistics.median(
            o / s for s, o in zip(results[name]["snippet"], results[name]["glstream.open"]))
        ca = statistics.median(cpu[name]["snippet"])
        cb = statistics.median(cpu[name]["glstream.open"])
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a * 100:.1f} % | {paired * 100:.1f} % "
              f"| {ca:.0f} us | {cb:.0f} us |")


if __name__ == "__main__":
    main()
