#!/usr/bin/env bash
# benches/sse_ttfb.sh — time to the first SSE event through warden, nginx and
# haproxy, against the upstream directly.
#
# Usage:
#   benches/sse_ttfb.sh            # full run (defaults below)
#   benches/sse_ttfb.sh --quick    # smoke test: N=200 ROUNDS=1
#   MODE=fresh N=4000 benches/sse_ttfb.sh
#
# Environment:
#   N             event streams per target, split evenly over the rounds
#                 (default 2000)
#   ROUNDS        interleaved rounds (default 4)
#   MODE          keepalive (default): the streams of a round follow each
#                 other on one keep-alive connection, timed from writing the
#                 request; fresh: one new connection per stream, timed from
#                 connect()
#   HOLD_MS       how long the upstream keeps a stream open after its event
#                 (default 1)
#   WARMUP        un-measured streams per target before round 1 (default 50)
#   TARGETS       subset/order of "direct warden nginx haproxy" (default all;
#                 haproxy skipped when not installed)
#   plus SKIP_BUILD, UPSTREAM_BIN, WARDEN_BIN, WARDEN_ARGS, OUT_DIR,
#   BUILD_TIMEOUT as described in benches/lib.sh (warden is never built here).
#
# Method:
#   * compare.sh's setup: 127.0.0.1 only; the proxy alone on CPU 1 with one
#     worker; the client and the bench upstream on CPU 0 (taskset).
#   * The bench upstream's `GET /sse?hold_ms=H` answers `text/event-stream`
#     (chunked) with one JSON-RPC result event written at once, keeps the
#     stream open H ms more, then ends it; so the event and the end of the
#     stream are two writes and a proxy that buffers shows it.
#   * warden runs in zero-config mode, role mcp (the role whose SSE answers
#     its observer watches for JSON-RPC errors); nginx with compare.sh's
#     config plus `proxy_buffering off;` (what a production nginx in front of
#     SSE is given); haproxy with compare.sh's config plus `option
#     http-no-delay` (without it haproxy sends with MSG_MORE and an event
#     waits for the next write: ~2 ms here).
#   * benches/sse_client.py sends the requests one at a time (raw HTTP/1.1)
#     and times each from the request's write (MODE=keepalive) or connect()
#     (MODE=fresh) to the end of the first `data:` line.
#   * Rounds are interleaved (round 1: direct warden nginx haproxy, round 2:
#     ...).  p50/p99/p99.9 are over all the streams of a target; "vs nginx"
#     is the target's p50/p99 minus nginx's.
#   * CPU per stream: utime+stime of the proxy (/proc/PID/stat, fields 14
#     and 15) over the rounds, divided by the streams.  Mostly the proxy's
#     per-request cost at a low rate, plus per-connection costs with fresh.
#
# Output: a markdown table on stdout, progress and warnings on stderr.
# Exit status: 0 on success; 1 if a requested target could not be started,
# died or failed a stream (the table is still printed); 2 on bad arguments.
#
# Requires: bash, taskset, curl, python3, nginx and haproxy (`apt-get install
# nginx-light haproxy`), cargo for the bench upstream unless SKIP_BUILD=1.

set -euo pipefail

BENCH=sse_ttfb.sh
# shellcheck source=benches/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

parse_args "$@"

N="${N:-2000}"
ROUNDS="${ROUNDS:-4}"
MODE="${MODE:-keepalive}"
HOLD_MS="${HOLD_MS:-1}"
WARMUP="${WARMUP:-50}"
if [[ "$QUICK" == 1 ]]; then
    N=200
    ROUNDS=1
    WARMUP=20
fi
TARGETS="${TARGETS:-direct warden nginx haproxy}"
check_uint N ROUNDS HOLD_MS WARMUP
if ((N < 1 || ROUNDS < 1 || N > 1000000 || HOLD_MS > 10000)); then
    echo "$BENCH: N must be 1..1000000, ROUNDS >= 1, HOLD_MS <= 10000" >&2
    exit 2
fi
case "$MODE" in
    keepalive | fresh) ;;
    *) echo "$BENCH: MODE is keepalive or fresh (got '$MODE')" >&2; exit 2 ;;
esac
for t in $TARGETS; do
    case "$t" in
        direct | warden | nginx | haproxy) ;;
        *) echo "$BENCH: unknown target in TARGETS: $t" >&2; exit 2 ;;
    esac
done
CLIENT="$LIB_DIR/sse_client.py"

bench_init

# run_client TARGET COUNT OUTFILE: COUNT streams; the samples go to OUTFILE.
run_client() {
    local t="$1" n="$2" out="$3"
    # sse_client.py bounds itself (10 s per read, n × (10 s + hold) in all);
    # the timeout here is a backstop.
    timeout $((n * (10 + HOLD_MS / 1000 + 1) + 30)) taskset -c "$LOAD_CPU" \
        python3 "$CLIENT" "127.0.0.1:${PORT[$t]}" "$n" "$HOLD_MS" "$MODE" "$out" 10 >"$out.status" 2>&1
}

build_upstream
start_upstream upstream

declare -a ACTIVE=()
for t in $TARGETS; do
    case "$t" in
        direct) PORT[direct]="${PORT[upstream]}"; ACTIVE+=(direct); continue ;;
        warden) start_warden warden "http://127.0.0.1:${PORT[upstream]}" && ACTIVE+=(warden) ;;
        nginx) start_nginx nginx "${PORT[upstream]}" "" "proxy_buffering off;" && ACTIVE+=(nginx) ;;
        haproxy)
            if ! find_tool haproxy >/dev/null; then
                STATUS[haproxy]="skipped (not installed)"
            else
                start_haproxy haproxy "${PORT[upstream]}" "" "option http-no-delay" && ACTIVE+=(haproxy)
            fi
            ;;
    esac
    if [[ -n "${STATUS[$t]:-}" ]]; then
        warn "$t: ${STATUS[$t]}"
    else
        log "$t on 127.0.0.1:${PORT[$t]} (pid ${PID[$t]}, CPU $PROXY_CPU)"
    fi
done
((${#ACTIVE[@]} > 0)) || die "no target could be started"

measure_background

if ((WARMUP > 0)); then
    for t in "${ACTIVE[@]}"; do
        log "warm-up $t ($WARMUP streams, not counted)"
        run_client "$t" "$WARMUP" "$WORK/$t-warmup.txt" || warn "warm-up failed for $t: $(cat "$WORK/$t-warmup.txt.status")"
    done
fi

declare -A UT=() ST=() DONE=()
for ((round = 1; round <= ROUNDS; round++)); do
    # The first N % ROUNDS rounds take one stream more.
    n=$((N / ROUNDS + (round <= N % ROUNDS ? 1 : 0)))
    ((n > 0)) || continue
    for t in "${ACTIVE[@]}"; do
        [[ -n "${STATUS[$t]:-}" ]] && continue
        out="$WORK/$t-round$round.txt"
        pid=""
        [[ "$t" != direct ]] && pid="${PID[$t]}"
        if [[ -n "$pid" ]]; then
            read -r u0 s0 < <(proc_ticks "$pid") || { STATUS[$t]="died before round $round"; continue; }
        fi
        if ! run_client "$t" "$n" "$out"; then
            warn "$t round $round: $(cat "$out.status")"
            STATUS[$t]="stream failed in round $round"
        fi
        if [[ -n "$pid" ]]; then
            if read -r u1 s1 < <(proc_ticks "$pid"); then
                UT[$t]=$((${UT[$t]:-0} + u1 - u0))
                ST[$t]=$((${ST[$t]:-0} + s1 - s0))
            else
                STATUS[$t]="died during round $round"
            fi
        fi
        got="$(wc -l <"$out" 2>/dev/null || echo 0)"
        DONE[$t]=$((${DONE[$t]:-0} + got))
        cat "$out" >>"$WORK/$t-all.txt" 2>/dev/null || true
        log "$(printf 'round %d/%d %-8s %5d streams  %s' "$round" "$ROUNDS" "$t" "$got" \
            "$(python3 -c 'import sys,statistics; v=sorted(float(x) for x in open(sys.argv[1])); print("p50 %.1f us" % statistics.median(v) if v else "no samples")' "$out")")"
    done
done

# stats FILE → "count p50 p99 p999 mean" (µs)
stats() {
    python3 - "$1" <<'EOF'
import sys
try:
    v = sorted(float(x) for x in open(sys.argv[1]))
except OSError:
    v = []
if not v:
    print("0 nan nan nan nan")
else:
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print("%d %.1f %.1f %.1f %.1f" % (len(v), q(0.5), q(0.99), q(0.999), sum(v) / len(v)))
EOF
}

# ----------------------------------------------------------------- report --

declare -A SP50=() SP99=()
REPORT="$WORK/report.md"
{
    machine_line
    echo "Tools: python3 $(python3 -c 'import platform; print(platform.python_version())'), $(proxy_versions)"
    echo "Parameters: N=$N ROUNDS=$ROUNDS MODE=$MODE HOLD_MS=$HOLD_MS WARMUP=$WARMUP streams;" \
        "client and upstream pinned to CPU $LOAD_CPU, proxy pinned to CPU $PROXY_CPU;" \
        "time from $([[ "$MODE" == fresh ]] && echo "connect()" || echo "writing the request") to the first complete data: line"
    echo
    echo "| target | streams | p50 µs | p99 µs | p99.9 µs | mean µs | p50 vs nginx µs | p99 vs nginx µs | CPU µs/stream | user / sys µs/stream |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
        read -r cnt p50 p99 p999 mean < <(stats "$WORK/$t-all.txt")
        SP50[$t]="$p50"; SP99[$t]="$p99"
    done
    for t in $TARGETS; do
        read -r cnt p50 p99 p999 mean < <(stats "$WORK/$t-all.txt")
        if ((cnt == 0)); then
            echo "| $t | ${STATUS[$t]:-no data} | — | — | — | — | — | — | — | — |"
            continue
        fi
        vs50="—"; vs99="—"; cpu="—"; split="—"
        if [[ "$t" != nginx && "${SP50[nginx]:-nan}" != nan ]]; then
            vs50="$(awk -v a="$p50" -v b="${SP50[nginx]}" 'BEGIN { printf "%+.0f", a - b }')"
            vs99="$(awk -v a="$p99" -v b="${SP99[nginx]}" 'BEGIN { printf "%+.0f", a - b }')"
        fi
        if [[ "$t" != direct ]]; then
            read -r c_tot c_user c_sys < <(us_per_req "${UT[$t]:-0}" "${ST[$t]:-0}" "$cnt")
            cpu="$(fmt "$c_tot" '%.1f')"
            split="$(fmt "$c_user" '%.1f') / $(fmt "$c_sys" '%.1f')"
        fi
        name="$t"
        [[ -n "${STATUS[$t]:-}" ]] && name="$t (${STATUS[$t]})"
        printf '| %s | %d | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %s |\n' \
            "$name" "$cnt" "$p50" "$p99" "$p999" "$mean" "$vs50" "$vs99" "$cpu" "$split"
    done
    if [[ "${SP50[warden]:-nan}" != nan && "${SP50[nginx]:-nan}" != nan ]]; then
        echo
        awk -v w50="${SP50[warden]}" -v n50="${SP50[nginx]}" -v w99="${SP99[warden]}" -v n99="${SP99[nginx]}" \
            'BEGIN { printf "warden − nginx: p50 %+.0f µs, p99 %+.0f µs (issue 13 target: ≤ +100 µs)\n", w50 - n50, w99 - n99 }'
    fi
} >"$REPORT"

cat "$REPORT"

fail=0
for t in $TARGETS; do
    if [[ -n "${STATUS[$t]:-}" && "${STATUS[$t]}" != skipped* ]]; then
        warn "$t: ${STATUS[$t]}"
        fail=1
    fi
done
exit "$fail"
