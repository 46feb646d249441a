#!/bin/sh
# Shared memory at render speed: for the cube and the waves shader at 800x600, 1280x720 and
# 1920x1080, `glstream bench --transports shm-pbo,shm-direct` runs render only, readback, and the
# real stream loop through shared memory with frames copied out of the PBO ring (shm-pbo) and
# read straight into the samples on the reader thread (shm-direct), alternating within each
# round (`--shm-readback auto`, the default, picks direct on a software renderer for frames of
# 3 MiB and more). It prints, per cell, the bench's medians, the median over rounds of each
# round's e2e fps / render fps (the same round's runs are seconds apart, so a loaded machine moves
# both) and of each round's direct fps / pbo fps, and the cores each kept busy (fps x CPU per
# frame). Usage: bench/shm-readback.sh [REPEATS] [FRAMES]  (default 5 300)
set -eu
cd "$(dirname "$0")/.."
repeats=${1:-5}
frames=${2:-300}
bin=${GLSTREAM:-target/release/glstream}
[ -x "$bin" ] || cargo build --release
for size in 800x600 1280x720 1920x1080; do
    for scene in cube tests/assets/waves.frag; do
        "$bin" bench --transports shm-pbo,shm-direct --pbo-counts 2 --repeats "$repeats" \
            --frames "$frames" --width "${size%x*}" --height "${size#*x}" --scene "$scene" \
            2>/dev/null | python3 bench/shm_ratio.py
    done
done
