#!/usr/bin/env python3
"""Requests per second and request-to-frame latency of glstream's control channel.

Starts `glstream --on-request` (800x600 by default, the cube, a TCP consumer that reads every
frame), sends N requests one at a time from a REQ client, each moving the camera, and measures
for each the time from sending the request to having read the frame that answers it (its id in
the glstream v2 header) and to the answer. Prints requests/s, median and p99 latencies.

    .venv/bin/python bench/control.py [--binary target/release/glstream] [--requests 500]
"""

import argparse
import json
import math
import socket
import struct
import subprocess
import threading
import time

import zmq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/glstream")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--scene", default="cube")
    args = parser.parse_args()
    server = subprocess.Popen(
        [args.binary, "--width", str(args.width), "--height", str(args.height), "--scene",
         args.scene, "--port", "0", "--header", "glstream", "--policy", "lossless",
         "--control", "tcp://127.0.0.1:*", "--on-request"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        tcp = control = None
        while tcp is None or control is None:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("glstream exited before it listened")
            if line.startswith("listening on "):
                tcp = line.split()[-1]
            elif line.startswith("control listening on "):
                control = line.split()[-1]
        host, port = tcp.rsplit(":", 1)
        stream = socket.create_connection((host, int(port))).makefile("rb")
        arrived = {}
        done = threading.Event()

        def reader():
            while not done.is_set():
                head = stream.read(56)
                if len(head) < 56:
                    return
                size, = struct.unpack_from("<H", head, 6)
                rest = stream.read(size - 56)
                length, = struct.unpack_from("<Q", head, 48)
                request, = struct.unpack_from("<Q", rest, 8)
                stream.read(length)
                arrived[request] = time.perf_counter()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        context = zmq.Context()
        req = context.socket(zmq.REQ)
        req.connect(control)
        time.sleep(0.5)  # the consumer's connection is registered
        sent, answered = {}, {}
        started = time.perf_counter()
        for i in range(1, args.requests + 1):
            angle = 2 * math.pi * i / 120
            sent[i] = time.perf_counter()
            req.send(json.dumps({"id": i, "camera": {
                "eye": [3.6 * math.sin(angle), 0.6, 3.6 * math.cos(angle)]}}).encode())
            answer = json.loads(req.recv())
            answered[i] = time.perf_counter()
            assert answer["ok"], answer
        elapsed = time.perf_counter() - started
        deadline = time.time() + 30
        while len(arrived) < args.requests and time.time() < deadline:
            time.sleep(0.01)
        done.set()
        to_answer = sorted(answered[i] - sent[i] for i in sent)
        to_frame = sorted(arrived[i] - sent[i] for i in sent if i in arrived)

        def pct(values, p):
            return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000

        print(f"{args.requests} requests at {args.width}x{args.height} ({args.scene}, --on-request): "
              f"{args.requests / elapsed:.0f} requests/s")
        print(f"request to answer: median {pct(to_answer, 50):.2f} ms, p99 {pct(to_answer, 99):.2f} ms")
        print(f"request to frame read by a TCP consumer: median {pct(to_frame, 50):.2f} ms, "
              f"p99 {pct(to_frame, 99):.2f} ms ({len(to_frame)} of {args.requests} frames)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
