#!/usr/bin/env bash
# benches/callgrind_ab.sh — instructions per proxied request, by callgrind.
#
# Usage:
#   benches/callgrind_ab.sh LABEL=/path/to/warden [LABEL2=/path/to/warden2 ...]
#
# For each binary: start the bench upstream natively (CPU 0), run
# `warden run --listen … --upstream … --admin … --log-format json` with
# RUST_LOG=warn under `valgrind --tool=callgrind` (CPU 1, so its runtime
# sizes itself to one worker, as in compare.sh), send WARM requests, zero the
# counters (callgrind_control -z), send REQS keep-alive requests over CONNS
# connections with benches/fixed_load.py, dump (callgrind_control -d) and
# divide the dump's total Ir by REQS.  Instruction counts do not depend on
# how busy the machine is, so this A/B is usable on a shared machine.
# Only user-space instructions of the proxy process are counted (no kernel).
#
# Environment:
#   REQS (default 3000), CONNS (8), WARM (400), REPEAT (1: runs per binary)
#   LOAD          http1 (default: benches/fixed_load.py, keep-alive HTTP/1.1)
#                 or h2 (h2load, HTTP/2 prior knowledge, CONNS connections
#                 with STREAMS concurrent streams each; Debian nghttp2-client)
#   STREAMS       concurrent streams per connection with LOAD=h2 (default 10)
#   OUT_DIR  where callgrind files and annotations go (default: mktemp -d,
#            kept and printed)
#   UPSTREAM_BIN  default benches/upstream/target/release/warden-bench-upstream
#   VALGRIND_ARGS extra callgrind options, e.g. "--dump-instr=yes"
#
# Output: one line per run "LABEL run K: Ir=… reqs=… Ir/req=…" on stdout,
# plus OUT_DIR/LABEL.K.summary.txt (benches/callgrind_summary.py: top 30
# functions by self and inclusive Ir, callers of memcpy and memmem::Searcher).
# Everything listens on 127.0.0.1; every wait is bounded; every process
# started here is killed on exit.

set -euo pipefail

REQS="${REQS:-3000}"
CONNS="${CONNS:-8}"
WARM="${WARM:-400}"
REPEAT="${REPEAT:-1}"
LOAD="${LOAD:-http1}"
STREAMS="${STREAMS:-10}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UPSTREAM_BIN="${UPSTREAM_BIN:-$SCRIPT_DIR/upstream/target/release/warden-bench-upstream}"
OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/warden-callgrind.XXXXXX")}"
mkdir -p "$OUT_DIR"

log() { printf '[callgrind] %s\n' "$*" >&2; }
die() { printf '[callgrind] ERROR: %s\n' "$*" >&2; exit 1; }

(($# >= 1)) || die "usage: $0 LABEL=/path/to/warden ..."
[[ -x "$UPSTREAM_BIN" ]] || die "bench upstream missing: $UPSTREAM_BIN"
for tool in valgrind callgrind_control taskset curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

declare -a PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

case "$LOAD" in
    http1) ;;
    h2) command -v h2load >/dev/null || die "LOAD=h2 needs h2load (apt-get install nghttp2-client)" ;;
    *) die "LOAD must be http1 or h2 (got '$LOAD')" ;;
esac

# load PORT COUNT: sends COUNT requests; prints "ok N" with the requests answered 2xx.
load() {
    if [[ "$LOAD" == http1 ]]; then
        timeout 1800 python3 "$SCRIPT_DIR/fixed_load.py" "127.0.0.1:$1" "$2" "$CONNS" 30
        return
    fi
    local out ok
    out="$(timeout 1800 h2load -n "$2" -c "$CONNS" -m "$STREAMS" "http://127.0.0.1:$1/")" || return 1
    ok="$(awk '/^status codes:/ { gsub(",", "", $3); print $3 }' <<<"$out")"
    [[ "$ok" =~ ^[0-9]+$ && "$ok" -gt 0 ]] || { echo "$out" >&2; return 1; }
    echo "ok $ok"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_200() { # PORT PID SECONDS
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/" || true)" == 200 ]] && return 0
        sleep 0.2
    done
    return 1
}

taskset -c 0 "$UPSTREAM_BIN" 0 >"$OUT_DIR/upstream.out" 2>"$OUT_DIR/upstream.err" &
PIDS+=("$!")
UP_PID=$!
for _ in $(seq 50); do [[ -s "$OUT_DIR/upstream.out" ]] && break; sleep 0.1; done
UP_ADDR="$(head -n1 "$OUT_DIR/upstream.out")"
[[ "$UP_ADDR" =~ ^127\.0\.0\.1:([0-9]+)$ ]] || die "upstream printed no address"
UP_PORT="${BASH_REMATCH[1]}"
wait_200 "$UP_PORT" "$UP_PID" 10 || die "upstream not serving"
log "upstream $UP_ADDR"

for spec in "$@"; do
    label="${spec%%=*}"
    bin="${spec#*=}"
    [[ -x "$bin" ]] || die "$bin is not executable"
    for ((k = 1; k <= REPEAT; k++)); do
        port="$(free_port)"
        admin="$(free_port)"
        cg="$OUT_DIR/callgrind.$label.$k"
        read -r -a vg_extra <<<"${VALGRIND_ARGS:-}"
        RUST_LOG=warn taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$cg.%p" "${vg_extra[@]}" \
            "$bin" run --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$UP_PORT" \
            --admin "127.0.0.1:$admin" --log-format json >"$OUT_DIR/$label.$k.log" 2>&1 &
        PIDS+=("$!")
        wpid=$!
        wait_200 "$port" "$wpid" 120 || die "$label did not start under valgrind (see $OUT_DIR/$label.$k.log)"
        load "$port" "$WARM" >&2 ||
            die "$label warm-up failed"
        timeout 60 callgrind_control -z "$wpid" >/dev/null || die "callgrind_control -z failed"
        out="$(load "$port" "$REQS")" ||
            die "$label load failed: $out"
        timeout 60 callgrind_control -d "$wpid" >/dev/null || die "callgrind_control -d failed"
        dump=""
        for _ in $(seq 100); do
            dump="$(ls -t "$cg.$wpid".* 2>/dev/null | head -n1 || true)"
            [[ -n "$dump" ]] && grep -q '^totals:' "$dump" 2>/dev/null && break
            sleep 0.2
        done
        [[ -n "$dump" ]] || die "no dump for $label"
        ir="$(awk '/^totals:/ { print $2 }' "$dump")"
        n="${out#ok }"
        printf '%s run %d: Ir=%s reqs=%s Ir/req=%s (%s)\n' "$label" "$k" "$ir" "$n" \
            "$(awk -v a="$ir" -v b="$n" 'BEGIN { printf "%.0f", a / b }')" "$dump"
        # callgrind_annotate 3.19 charges these dumps to __libc_start_main, so
        # the per-function tables come from callgrind_summary.py.
        python3 "$SCRIPT_DIR/callgrind_summary.py" "$dump" "$n" 30 --callers memcpy Searcher::new \
            >"$OUT_DIR/$label.$k.summary.txt" || true
        kill -TERM "$wpid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$wpid" 2>/dev/null || true
        wait "$wpid" 2>/dev/null || true
    done
done
log "outputs in $OUT_DIR"
