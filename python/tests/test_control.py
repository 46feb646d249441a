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


def test_control_send_answers_and_refusals(producers):
    producer = producers("--port", "0", "--width", str(W), "--height", str(H), "--header",
                         "glstream", "--control", "tcp://127.0.0.1:*", "--on-request")
    with glstream.open("tcp://" + producer.endpoint(), timeout=TIMEOUT) as stream, \
            glstream.Control(producer.endpoint("control listening on "), timeout=TIMEOUT) as control:
        answer = control.send(camera={"eye": [2, 1, 3]}, frame=4)
        assert answer == {"id": 1, "ok": True, "frame": 4}, answer
        frame = stream.read()
        assert (frame.index, frame.request_id) == (4, 1)
        moved = frame.copy().pixels
        refused = control.send(uniforms={"u_x": 1})
        assert refused["id"] == 2 and refused["ok"] is False, refused
        assert "no settable uniforms" in refused["error"]
        # Nothing of a refused request was applied; an explicit id is kept.
        answer = control.send(id=40, frame=4)
        assert answer == {"id": 40, "ok": True, "frame": 4}, answer
        frame = stream.read()
        assert frame.request_id == 40 and np.array_equal(frame.pixels, moved)
        answer = control.send(camera={"eye": [0, 0.6, 3.6]}, frame=4)
        assert not np.array_equal(stream.read().pixels, moved)


def test_control_times_out_and_recovers():
    # Nobody answers on this endpoint: Timeout, and the client can send again afterwards.
    silent = zmq.Context.instance().socket(zmq.ROUTER)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        control = glstream.Control(f"tcp://127.0.0.1:{port}", timeout=0.3)
        for _ in range(2):
            try:
                control.send(frame=1)
            except glstream.Timeout:
                pass
            else:
                raise AssertionError("no Timeout")
        control.close()
    finally:
        silent.close(0)


def test_the_readme_steering_example_runs_as_written(producers, tmp_path):
    import os
    import subprocess
    import sys

    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"),
                  encoding="utf-8").read()
    section = readme[readme.index("## Steering the renderer\n"):]
    commands = section.split("```sh\n")[1].split("\n```")[0]
    serve, steer = commands.splitlines()
    assert serve.startswith("glstream ") and serve.endswith(" &"), serve
    args = serve[len("glstream "):-2].split()
    args[args.index("--port") + 1] = "0"
    args[args.index("--control") + 1] = "tcp://127.0.0.1:*"
    producer = producers(*args, "--width", str(W), "--height", str(H))
    control = producer.endpoint("control listening on ")
    assert steer.startswith(".venv/bin/python examples/steer.py "), steer
    argv = steer.split()[1:]
    argv = [a.replace("tcp://127.0.0.1:5555", control)
             .replace("tcp://127.0.0.1:9000", "tcp://" + producer.endpoint())
             .replace("orbit/", str(tmp_path / "orbit")) for a in argv]
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    done = subprocess.run([sys.executable, *argv, "4"], cwd=root, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = sorted(os.listdir(tmp_path / "orbit"))
    assert saved == [f"orbit_{i:03d}.png" for i in range(4)], saved
    from PIL import Image
    images = [np.asarray(Image.open(tmp_path / "orbit" / name)) for name in saved]
    assert all(not np.array_equal(images[0], other) for other in images[1:])
