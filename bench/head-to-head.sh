#!/usr/bin/env bash
# The head-to-head benchmark (see bench/head_to_head.py): builds glstream, makes a venv with
# moderngl and numpy under bench/.venv on first use, and runs. Arguments go to head_to_head.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet moderngl numpy
fi
exec bench/.venv/bin/python bench/head_to_head.py "$@"
