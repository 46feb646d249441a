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


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_section(title: str) -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def blocks(text: str, language: str) -> list:
    return [part.split("\n```")[0] for part in text.split(f"```{language}\n")[1:]]


def test_the_readme_quick_start_runs_as_written(producers):
    section = readme_section("Python consumers")
    (commands,) = blocks(section, "sh")
    serve, install, consume = commands.splitlines()
    assert install == 'pip install "./python[all]"'  # what .ci/run does to the venv under test
    assert serve.startswith("glstream ") and serve.endswith(" &")
    args = serve[len("glstream "):-2].split()
    assert args[args.index("--port") + 1] == "9000"
    args[args.index("--port") + 1] = "0"
    args[args.index("--width") + 1], args[args.index("--height") + 1] = str(W), str(H)
    producer = producers(*args, "--frames", "3", "--policy", "lossless")  # latest may skip
    port = producer.endpoint().rsplit(":", 1)[1]
    assert consume.startswith("python examples/python_consumer.py ")
    argv = consume.split()[1:]
    argv = [a.replace("127.0.0.1:9000", "127.0.0.1:" + port) for a in argv]
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    done = subprocess.run([sys.executable, *argv], cwd=root, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "received 3 frames" in done.stdout, done.stdout


def test_the_readme_python_snippet_runs_as_written(producers):
    (snippet,) = blocks(readme_section("Python consumers"), "python")
    assert 'glstream.open("tcp://127.0.0.1:9000")' in snippet
    producer = producers("--port", "0", "--width", str(W), "--height", str(H), "--frames", "4",
                         "--header", "glstream", "--policy", "lossless")
    script = snippet.replace("127.0.0.1:9000", producer.endpoint())
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1", "2", "3"], done.stdout
    assert f"({H}, {W}, 4)" in lines[0]
