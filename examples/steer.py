#!/usr/bin/env python3
"""Drives the camera around the cube through glstream's control channel and saves each frame
that answers a request, matched by its request id.

    glstream --header glstream --port 9000 --control tcp://127.0.0.1:5555 --on-request &
    .venv/bin/python examples/steer.py tcp://127.0.0.1:5555 tcp://127.0.0.1:9000 orbit/

Arguments: the control endpoint, the stream's URL, the directory for the PNGs, and optionally
how many steps make the orbit (default 36).
"""

import math
import os
import sys

import numpy as np
from PIL import Image

import glstream


def main() -> None:
    control_url, stream_url, out = sys.argv[1], sys.argv[2], sys.argv[3]
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 36
    os.makedirs(out, exist_ok=True)
    with glstream.open(stream_url, timeout=60) as stream, \
            glstream.Control(control_url, timeout=60) as control:
        for step in range(steps):
            angle = 2 * math.pi * step / steps
            eye = [3.6 * math.sin(angle), 1.2, 3.6 * math.cos(angle)]
            answer = control.send(camera={"eye": eye, "target": [0, 0, 0]}, frame=0)
            if not answer["ok"]:
                sys.exit(f"refused: {answer['error']}")
            frame = stream.read()
            while frame is not None and frame.request_id != answer["id"]:
                frame = stream.read()      # frames of earlier requests or none
            if frame is None:
                sys.exit("the stream ended")
            path = os.path.join(out, f"orbit_{step:03d}.png")
            Image.fromarray(np.ascontiguousarray(frame.pixels)).save(path)
            print(f"request {answer['id']}: eye ({eye[0]:.2f}, {eye[1]:.2f}, {eye[2]:.2f}) -> {path}")


if __name__ == "__main__":
    main()
