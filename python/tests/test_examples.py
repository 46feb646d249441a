"""examples/python_consumer.py, the README's Python quick start, against the real binary."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from helpers import TIMEOUT, H, W, reference_frames

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python_consumer.py")


def test_the_quick_start_example_reads_a_stream_to_its_end(producers, tmp_path):
    producer = producers("--port", "0", "--width", str(W), "--height", str(H), "--frames", "5",
                         "--policy", "lossless")
    saved = tmp_path / "last.npy"
    done = subprocess.run(
        [sys.executable, EXAMPLE, "tcp://" + producer.endpoint(), "--save", str(saved)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{W}x{H} rgba8, header blender, codec none" in done.stdout, done.stdout
    assert "received 5 frames" in done.stdout, done.stdout
    assert np.array_equal(np.load(saved), reference_frames(5)[4])
