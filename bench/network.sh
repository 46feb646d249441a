#!/usr/bin/env bash
# Raw vs compressed frames across a real, shaped network link.
#
# Builds two network namespaces joined by a veth pair, each end shaped to 1 Gbit/s with a token
# bucket (tc tbf), runs the glstream producer in one and `glstream recv` (which decodes every
# codec) in the other, and prints, per scene, size and codec: the compression ratio, the fps the
# consumer gets and the Mbit/s on the wire. For lossless codecs (and raw) it also checks that the
# frames received, once decoded, are byte-identical to `glstream snapshot` of the same frame
# indices. Everything it makes (namespaces, links, processes, files) is torn down on exit, even
# on failure or Ctrl-C.
#
# Run as root, from the repository, after `cargo build --release`:
#   sudo bench/network.sh
# Environment (all optional):
#   SCENES="cube tests/assets/model.gltf bench/plasma.frag bench/noise.frag"
#   SIZES="800x600 1920x1080"   CODECS="none qoi zstd lz4 jpeg"
#   SECONDS_PER_RUN=6   RATE=1gbit   POLICY=lossless (or latest)   THREADS= (--compress-threads)
#   PRODUCER_ARGS="--fps 60" (more producer options, for the timed runs only: the check of the
#   frames runs the producer as snapshot renders, or --fps would change a shader's iTime)   GLSTREAM=target/release/glstream
#   JSON=FILE (appends one JSON object per cell)   QUIET_WAIT=0 (seconds to wait, before each
#   run, for other processes to go quiet)
# prod% and recv% are the CPU the producer and recv used over the measured run, in % of one
# core; other% is what every other process on the machine used meanwhile (on a shared machine,
# CPU the run did not get).
# Progress goes to stderr, the table to stdout.

set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/network.sh: must run as root (it creates network namespaces and shapes links with tc)" >&2
    exit 1
fi

cd "$(dirname "$0")/.."
BIN=${GLSTREAM:-target/release/glstream}
SCENES=${SCENES:-"cube tests/assets/model.gltf bench/plasma.frag bench/noise.frag"}
SIZES=${SIZES:-"800x600 1920x1080"}
CODECS=${CODECS:-"none qoi zstd lz4 jpeg"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
RATE=${RATE:-1gbit}
# lossless: every frame reaches the consumer and the render loop waits for it, so the fps is what
# the whole pipeline sustains. With latest the render loop runs as fast as it can and, on a machine
# with few cores, takes the CPU the encoder needs (see docs/performance.md).
POLICY=${POLICY:-lossless}
THREADS=${THREADS:-}
PRODUCER_ARGS=${PRODUCER_ARGS:-}
VERIFY_FRAMES=3

if [ ! -x "$BIN" ]; then
    echo "bench/network.sh: $BIN not found: run cargo build --release first" >&2
    exit 1
fi
BIN=$(realpath "$BIN")

TAG=gls$$
NS_P=$TAG-p
NS_C=$TAG-c
IF_P=$TAG-p
IF_C=$TAG-c
ADDR_P=10.201.0.1
ADDR_C=10.201.0.2
PORT=9000
WORK=$(mktemp -d /tmp/glstream-network.XXXXXX)
PRODUCER=

log() { echo "network.sh: $*" >&2; }

teardown() {
    local status=$?
    if [ -n "$PRODUCER" ]; then
        kill "$PRODUCER" 2>/dev/null || true
        wait "$PRODUCER" 2>/dev/null || true
    fi
    ip netns del "$NS_P" 2>/dev/null || true
    ip netns del "$NS_C" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The link: two namespaces, a veth pair between them, each end shaped to $RATE on egress.
ip netns add "$NS_P"
ip netns add "$NS_C"
ip link add "$IF_P" netns "$NS_P" type veth peer name "$IF_C" netns "$NS_C"
ip -n "$NS_P" addr add "$ADDR_P/30" dev "$IF_P"
ip -n "$NS_C" addr add "$ADDR_C/30" dev "$IF_C"
for end in "$NS_P $IF_P" "$NS_C $IF_C"; do
    set -- $end
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
    # A bucket of 256 KiB drains in 2 ms at 1 Gbit/s; packets wait at most 10 ms in the queue.
    ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$RATE" burst 256kb latency 10ms
done
log "link $ADDR_P <-> $ADDR_C shaped to $RATE both ways (tbf)"

# Starts the producer in its namespace with "$@" and waits for its "listening on" line.
STARTS=0
start_producer() {
    # A log of its own: the previous producer's "listening on" must not be taken for this one's.
    STARTS=$((STARTS + 1))
    local out=$WORK/producer-$STARTS.log
    ip netns exec "$NS_P" "$BIN" --bind "$ADDR_P" --port "$PORT" --header glstream "$@" \
        >"$out" 2>&1 &
    PRODUCER=$!
    local waited=0
    until grep -q "listening on" "$out"; do
        if ! kill -0 "$PRODUCER" 2>/dev/null || [ $waited -ge 600 ]; then
            log "the producer did not start ($*):"
            cat "$out" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

stop_producer() {
    kill "$PRODUCER" 2>/dev/null || true
    wait "$PRODUCER" 2>/dev/null || true
    PRODUCER=
}

# Runs recv in the consumer's namespace with "$@"; prints its summary line.
consume() {
    /usr/bin/time -f 'cpu %U %S' ip netns exec "$NS_C" "$BIN" recv --connect "$ADDR_P:$PORT" \
        --header glstream -q "$@" 2>"$WORK/recv.err" | grep '^received' || {
        log "recv failed ($*):"
        cat "$WORK/recv.err" >&2
        exit 1
    }
}

# CPU seconds the producer has used so far.
producer_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$PRODUCER/stat"; }

# CPU seconds (user and system, not interrupts: the link's own work) every process on the
# machine has used so far, all cores.
machine_cpu() { awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { print ($2 + $3 + $4) / hz }' /proc/stat; }

# Waits up to QUIET_WAIT seconds for the other processes to use under 25 % of one core (over
# 1 s, with no producer running): for measuring on a shared machine.
wait_quiet() {
    local waited=0 a b
    while [ "$waited" -lt "${QUIET_WAIT:-0}" ]; do
        a=$(machine_cpu)
        sleep 1
        b=$(machine_cpu)
        if awk -v a="$a" -v b="$b" 'BEGIN { exit !((b - a) < 0.25) }'; then
            return
        fi
        waited=$((waited + 1))
    done
}

# CPU seconds the last recv used.
recv_cpu() { awk '$1 == "cpu" { print $2 + $3 }' "$WORK/recv.err"; }

# "received N frames WxH in S s: X fps, Y MB/s ..." -> "N S X Y"
parse() { sed -E 's/^received ([0-9]+) frames [0-9x]+ in ([0-9.]+) s: ([0-9.]+) fps, ([0-9.]+) MB\/s.*/\1 \2 \3 \4/'; }

echo "# $RATE (tbf, both ways), --policy $POLICY, --compress-threads ${THREADS:-default} $PRODUCER_ARGS, $(nproc) cores, ${SECONDS_PER_RUN} s a run"
printf '%-24s %-9s %-7s %7s %7s %7s %9s %6s %6s %6s\n' scene size codec ratio fps Mbit/s check "prod%" "recv%" "other%"
failures=0
for scene in $SCENES; do
    for size in $SIZES; do
        width=${size%x*}
        height=${size#*x}
        raw_bytes=$((width * height * 4))
        snapshots=$WORK/snapshot-$(echo "$scene-$size" | tr '/.' '__')
        log "$scene $size: snapshot of frames 0..$VERIFY_FRAMES"
        "$BIN" snapshot --width "$width" --height "$height" --scene "$scene" \
            --frames "0..$VERIFY_FRAMES" --output "$snapshots" 2>"$WORK/snapshot.err" || {
            cat "$WORK/snapshot.err" >&2
            exit 1
        }
        for codec in $CODECS; do
            compress=()
            if [ "$codec" != none ]; then
                compress=(--compress "$codec")
                if [ -n "$THREADS" ]; then compress+=(--compress-threads "$THREADS"); fi
            fi
            common=(--width "$width" --height "$height" --scene "$scene" "${compress[@]}")

            wait_quiet
            log "$scene $size $codec: $POLICY, ~${SECONDS_PER_RUN} s"
            # shellcheck disable=SC2086 # PRODUCER_ARGS is a list of words
            start_producer "${common[@]}" --policy "$POLICY" $PRODUCER_ARGS
            # Short runs to learn the rate, then one of about SECONDS_PER_RUN seconds (a run
            # that turns out shorter than 60 % of that is redone, sized by its own rate).
            read -r _ _ fps _ < <(consume --frames 10 | parse)
            for _ in 1 2 3; do
                frames=$(awk -v f="$fps" -v s="$SECONDS_PER_RUN" \
                    'BEGIN { n = int(f * s); if (n < 10) n = 10; if (n > 5000) n = 5000; print n }')
                cpu_before=$(producer_cpu)
                machine_before=$(machine_cpu)
                read -r got seconds fps mbs < <(consume --frames "$frames" | parse)
                machine_after=$(machine_cpu)
                cpu_after=$(producer_cpu)
                if awk -v s="$seconds" -v t="$SECONDS_PER_RUN" 'BEGIN { exit !(s >= 0.6 * t) }'; then
                    break
                fi
            done
            stop_producer
            ratio=$(awk -v n="$got" -v r="$raw_bytes" -v s="$seconds" -v m="$mbs" \
                'BEGIN { printf "%.2f", n * r / (m * 1e6 * s) }')
            # CPU over the run, in % of one core: 200 is both cores of a 2-core machine.
            prod_pct=$(awk -v a="$cpu_before" -v b="$cpu_after" -v s="$seconds" 'BEGIN { printf "%.0f", (b - a) / s * 100 }')
            recv_pct=$(awk -v c="$(recv_cpu)" -v s="$seconds" 'BEGIN { printf "%.0f", c / s * 100 }')
            others_pct=$(awk -v a="$machine_before" -v b="$machine_after" -v p="$prod_pct" -v r="$recv_pct" -v s="$seconds" \
                'BEGIN { o = (b - a) / s * 100 - p - r; if (o < 0) o = 0; printf "%.0f", o }')
            mbit=$(awk -v m="$mbs" 'BEGIN { printf "%.0f", m * 8 }')

            check=lossy
            if [ "$codec" != jpeg ] && [ "${codec%%:*}" != jpeg ]; then
                # Every byte: frames 0.. from an idle lossless producer, saved by index, against
                # the snapshot of the same indices.
                saved=$WORK/recv-$codec
                rm -rf "$saved"
                mkdir -p "$saved"
                start_producer "${common[@]}" --policy lossless
                consume --frames "$VERIFY_FRAMES" --save "$saved" >/dev/null
                stop_producer
                check=identical
                for ((i = 0; i < VERIFY_FRAMES; i++)); do
                    name=$(printf 'frame_%06d.png' "$i")
                    if ! "$BIN" compare "$snapshots/$name" "$saved/$name" >/dev/null 2>"$WORK/compare.err"; then
                        log "$scene $size $codec: $name differs from the snapshot:"
                        cat "$WORK/compare.err" >&2
                        check=DIFFERENT
                        failures=$((failures + 1))
                    fi
                done
            fi
            printf '%-24s %-9s %-7s %7s %7s %7s %9s %6s %6s %6s\n' "$scene" "$size" "$codec" "$ratio" "$fps" "$mbit" "$check" "$prod_pct" "$recv_pct" "$others_pct"
            [ -z "${JSON:-}" ] || echo "{\"scene\":\"$scene\",\"size\":\"$size\",\"codec\":\"$codec\",\"policy\":\"$POLICY\",\"ratio\":$ratio,\"fps\":$fps,\"mbit_s\":$mbit,\"frames\":$got,\"seconds\":$seconds,\"check\":\"$check\",\"producer_cpu_pct\":$prod_pct,\"recv_cpu_pct\":$recv_pct,\"others_cpu_pct\":$others_pct}" >>"$JSON"
        done
    done
done
if [ "$failures" -gt 0 ]; then
    log "$failures frame(s) differ from their snapshot"
    exit 1
fi
