#!/usr/bin/env bash
# The head-to-head benchmark (see bench/head_to_head.py): builds glstream, makes a venv with
# moderngl, iceoryx2 and numpy under bench/.venv on first use, and runs. Arguments go to head_to_head.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
if ! bench/.venv/bin/python -c 'import moderngl, numpy, iceoryx2' 2>/dev/null; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet moderngl numpy 'iceoryx2==0.10.0'
fi
exec bench/.venv/bin/python bench/head_to_head.py "$@"
