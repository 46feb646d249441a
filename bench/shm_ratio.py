"""Reads `glstream bench --transports shm-pbo,shm-direct`'s JSON line on stdin and prints one
line: the bench's medians, per transport the median over rounds of each round's e2e fps / render
fps, and the median over rounds of each round's direct fps / pbo fps (used by
bench/shm-readback.sh)."""

import json
import statistics
import sys

report = json.loads(sys.stdin.read().strip().splitlines()[-1])
scene = report["scene"].rsplit("/", 1)[-1].removesuffix(".frag")
configs = {(c["mode"], c["transport"]): c for c in report["configs"]}
render = configs[("render", "-")]
line = (
    f"{scene:6} {report['width']}x{report['height']}: render {render['fps']:.0f} fps,"
    f" cpu {render['cpu_ms']:.2f} ms/frame, {render['fps'] * render['cpu_ms'] / 1000:.2f} cores"
)
for transport in ("shm-pbo", "shm-direct"):
    c = configs[("e2e", transport)]
    ratios = [e / r for e, r in zip(c["fps_runs"], render["fps_runs"])]
    line += (
        f" | {transport} {c['fps']:.0f} fps, e2e/render {statistics.median(ratios):.2f}"
        f" (rounds {min(ratios):.2f}-{max(ratios):.2f}), cpu {c['cpu_ms']:.2f} ms/frame,"
        f" {c['fps'] * c['cpu_ms'] / 1000:.2f} cores,"
        f" {c['allocs_per_frame']:.2f} allocs/frame"
    )
direct = [
    a / b
    for a, b in zip(configs[("e2e", "shm-direct")]["fps_runs"], configs[("e2e", "shm-pbo")]["fps_runs"])
]
line += f" | direct / pbo {statistics.median(direct):.2f} (rounds {min(direct):.2f}-{max(direct):.2f})"
print(line)
