#!/usr/bin/env bash
# Wake-ups per second (voluntary context switches, all threads, over 5 s) of a shared-memory
# producer at --fps 30 and of its `recv --shm` consumer, and of an idle server with no client.
# An event-driven process wakes about once per frame; a polling one far more often.
# Usage: bench/wakeups.sh [GLSTREAM_BINARY]   (default: target/release/glstream)
set -euo pipefail
bin=${1:-target/release/glstream}
[ -x "$bin" ] || { echo "bench/wakeups.sh: no executable $bin (cargo build --release first)" >&2; exit 2; }
svc=glstream/wakeups-$$
sock=${TMPDIR:-/tmp}/glstream-wakeups-$$.sock
count() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/{s+=$2} END{print s+0}'; }
measure() { local a b; a=$(count "$1"); sleep 5; b=$(count "$1"); echo $(((b - a) / 5)); }

"$bin" --shm "$svc" --fps 30 --width 320 --height 240 >/dev/null 2>&1 & producer=$!
"$bin" --port 0 --unix "$sock" >/dev/null 2>&1 & idle=$!
trap 'kill $producer $idle ${consumer:-} 2>/dev/null; rm -f "$sock"' EXIT
sleep 1
"$bin" recv --shm "$svc" -q >/dev/null 2>&1 & consumer=$!
sleep 2
echo "idle server: $(measure $idle)/s"
p0=$(count $producer); c0=$(count $consumer); sleep 5; p1=$(count $producer); c1=$(count $consumer)
echo "shm producer at --fps 30: $(((p1 - p0) / 5))/s; recv --shm consumer: $(((c1 - c0) / 5))/s"
