"""Frames that answer `--control` requests carry their ids (docs/control.md), on the socket
stream (header v2, uncompressed: codec 0) and in shared memory, from the real binary."""

from __future__ import annotations

import json

import numpy as np
import zmq

import glstream
from helpers import TIMEOUT, H, W, reference_frames, service


def test_the_frame_answering_a_request_carries_its_id(producers):
    name = service("control")
    producer = producers("-v", "--port", "0", "--width", str(W), "--height", str(H), "--header",
                         "glstream", "--control", "tcp://127.0.0.1:*", "--on-request",
                         "--policy", "lossless", "--shm", name)
    control = producer.endpoint("control listening on ")
    tcp = glstream.open("tcp://" + producer.endpoint(), timeout=TIMEOUT)
    shm = glstream.open("shm://" + name, timeout=TIMEOUT)
    # Both consumers registered before the first request, or its one frame may miss one.
    producer.wait_log(" connected\n")
    producer.wait_log("subscribed")
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
    sock.connect(control)
    try:
        for request_id, index in ((7, 5), (8, 2)):
            sock.send(json.dumps({"id": request_id, "frame": index}).encode())
            answer = json.loads(sock.recv())
            assert answer == {"id": request_id, "ok": True, "frame": index}, answer
            for stream, header in ((tcp, "glstream"), (shm, "shm")):
                frame = stream.read()
                assert frame is not None
                assert (frame.index, frame.request_id, frame.header, frame.codec) == (
                    index, request_id, header, "none")
                assert np.array_equal(frame.pixels, reference_frames(index + 1)[index])
    finally:
        sock.close(0)
        tcp.close()
        shm.close()
