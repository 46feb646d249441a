"""Fixtures for running the real glstream binary (GLSTREAM_BIN) and peers written here."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config: pytest.Config) -> None:
    binary = os.environ.get("GLSTREAM_BIN")
    if not binary:
        raise pytest.UsageError(
            "GLSTREAM_BIN is not set: these tests run the real binary. Build it and point at it: "
            "cargo build --release && GLSTREAM_BIN=target/release/glstream python -m pytest "
            "python/tests (cargo test --release --test tests python does both)"
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise pytest.UsageError(f"GLSTREAM_BIN={binary} is not an executable file")


@pytest.fixture
def producers():
    """Starts glstream producers (helpers.Producer) and kills whatever is left at the end."""
    from helpers import Producer

    started: list = []

    def start(*args: str, ready: str = "listening on ") -> Producer:
        producer = Producer(list(args), ready)
        started.append(producer)
        return producer

    yield start
    for producer in started:
        running = producer.process.poll() is None
        producer.kill()
        # Shown by pytest only when the test failed.
        state = "was still running" if running else f"exited {producer.process.returncode}"
        print(f"glstream {' '.join(producer.args)} {state}; stderr:\n{producer.stderr()}")
