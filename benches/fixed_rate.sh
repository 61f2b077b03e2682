#!/usr/bin/env bash
# benches/fixed_rate.sh — latency added by warden, nginx and haproxy at fixed,
# moderate request rates (not at saturation), over a direct baseline.
#
# Usage:
#   benches/fixed_rate.sh            # full run (defaults below)
#   benches/fixed_rate.sh --quick    # smoke test: ROUNDS=1 DURATION=3 WARMUP=1
#   RATES="5000 20000 40000" ROUNDS=7 benches/fixed_rate.sh
#
# Environment:
#   RATES         request rates in req/s, each run separately (default "5000 20000")
#   DURATION      seconds per measured oha run (default 10)
#   CONNECTIONS   oha connections (default 32)
#   ROUNDS        measured rounds per target and rate (default 5)
#   WARMUP        seconds of one un-measured oha run per target at the first
#                 rate before round 1 (default 2; 0 disables)
#   TARGETS       subset/order of "direct warden nginx haproxy" (default all;
#                 haproxy is skipped with a warning when not installed)
#   LATENCY_CORRECTION=1  pass --latency-correction to oha (latency counted
#                 from when a request was due, not when it was sent: the
#                 coordinated-omission correction)
#   OHA_BIN       oha binary (default: `oha` on PATH or ~/.cargo/bin/oha; when
#                 missing it is installed with `cargo install oha --locked`)
#   plus SKIP_BUILD, UPSTREAM_BIN, WARDEN_BIN, WARDEN_ARGS, OUT_DIR,
#   BUILD_TIMEOUT as described in benches/lib.sh (warden is never built here).
#
# Method:
#   * compare.sh's setup: 127.0.0.1 only; the proxy alone on CPU 1 with one
#     worker; oha and the bench upstream on CPU 0 (taskset); warden in
#     zero-config mode (role mcp), nginx and haproxy with compare.sh's configs.
#   * Load: `oha --no-tui --output-format json -z DURATIONs -q RATE
#     -c CONNECTIONS -w`: oha starts RATE requests per second over the
#     connections, one in flight on each (a rate-limited load, unlike wrk's
#     as-fast-as-possible one); latency runs from a request's send (from
#     when it was due with LATENCY_CORRECTION=1), and the requests still in
#     flight at the deadline are waited for.
#   * Rounds are interleaved: round 1 runs every rate, and at each rate every
#     target (direct warden nginx haproxy) in turn; then round 2, ...
#   * Per target and rate: medians over rounds of the achieved rate and of
#     oha's p50, p99 and p99.9; "added" is the target's figure minus direct's
#     in the same round and rate, median over rounds.
#   * CPU per request: utime and stime of the proxy process (fields 14 and 15
#     of /proc/PID/stat, all threads) before and after each measured run,
#     summed over the rounds of a rate and divided by the responses oha got.
#     At a fixed rate, "proxy core busy" = rate × CPU per request.
#
# Output: a markdown table on stdout, progress and warnings on stderr.
# Exit status: 0 on success; 1 if a requested target could not be started or
# died, or saw errors or non-200 answers (the table is still printed); 2 on
# bad arguments.
#
# Requires: bash, taskset, curl, python3, cargo (for the bench upstream and
# oha unless present), nginx and haproxy (`apt-get install nginx-light
# haproxy`; benches/compare.sh installs them too).

set -euo pipefail

BENCH=fixed_rate.sh
# shellcheck source=benches/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

parse_args "$@"

RATES="${RATES:-5000 20000}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
ROUNDS="${ROUNDS:-5}"
WARMUP="${WARMUP:-2}"
if [[ "$QUICK" == 1 ]]; then
    ROUNDS=1
    DURATION=3
    WARMUP=1
fi
TARGETS="${TARGETS:-direct warden nginx haproxy}"
LATENCY_CORRECTION="${LATENCY_CORRECTION:-0}"
check_uint DURATION CONNECTIONS ROUNDS WARMUP
for r in $RATES; do
    [[ "$r" =~ ^[1-9][0-9]*$ ]] || { echo "$BENCH: RATES must hold positive integers (got '$r')" >&2; exit 2; }
done
if ((DURATION < 1 || CONNECTIONS < 1 || ROUNDS < 1)); then
    echo "$BENCH: DURATION, CONNECTIONS and ROUNDS must be >= 1" >&2
    exit 2
fi
for t in $TARGETS; do
    case "$t" in
        direct | warden | nginx | haproxy) ;;
        *) echo "$BENCH: unknown target in TARGETS: $t" >&2; exit 2 ;;
    esac
done

bench_init

# ------------------------------------------------------------------ oha --

find_oha() {
    if [[ -n "${OHA_BIN:-}" ]]; then
        [[ -x "$OHA_BIN" ]] || die "OHA_BIN=$OHA_BIN is not executable"
        return 0
    fi
    if command -v oha >/dev/null 2>&1; then
        OHA_BIN="$(command -v oha)"
    elif [[ -x "$HOME/.cargo/bin/oha" ]]; then
        OHA_BIN="$HOME/.cargo/bin/oha"
    else
        command -v cargo >/dev/null 2>&1 ||
            die "oha is missing and cargo is not installed: install oha with 'cargo install oha --locked'"
        log "installing oha: cargo install oha --locked (a few minutes)"
        timeout "$BUILD_TIMEOUT" cargo install oha --locked ||
            die "'cargo install oha --locked' failed"
        OHA_BIN="$HOME/.cargo/bin/oha"
    fi
    # --output-format json appeared in oha 1.5; older ones had -j.
    if "$OHA_BIN" --help 2>/dev/null | grep -q -- '--output-format'; then
        OHA_JSON=(--output-format json)
    else
        OHA_JSON=(-j)
    fi
}
declare -a OHA_JSON=()
find_oha

# run_oha TARGET RATE SECONDS OUTFILE
run_oha() {
    local target="$1" rate="$2" secs="$3" out="$4"
    local -a extra=()
    [[ "$LATENCY_CORRECTION" == 1 ]] && extra=(--latency-correction)
    timeout $((secs + 30)) taskset -c "$LOAD_CPU" "$OHA_BIN" --no-tui "${OHA_JSON[@]}" \
        -z "${secs}s" -q "$rate" -c "$CONNECTIONS" -w -t 5s "${extra[@]}" \
        "http://127.0.0.1:${PORT[$target]}/" >"$out" 2>"$out.err"
}

# parse_oha FILE → "rps p50_us p99_us p999_us responses non200 errors"
parse_oha() {
    python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
p = d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution", {}) or {}
errors = d.get("errorDistribution", {}) or {}
def us(k):
    v = p.get(k)
    return "nan" if v is None else "%.1f" % (v * 1e6)
responses = sum(codes.values())
non200 = sum(n for c, n in codes.items() if str(c) != "200")
print("%.1f %s %s %s %d %d %d" % (s.get("requestsPerSec") or 0, us("p50"), us("p99"),
      us("p99.9"), responses, non200, sum(errors.values())))
EOF
}

# ------------------------------------------------------------------ main --

build_upstream
start_upstream upstream

declare -a ACTIVE=()
for t in $TARGETS; do
    case "$t" in
        direct) PORT[direct]="${PORT[upstream]}"; ACTIVE+=(direct) ;;
        warden) start_warden warden "http://127.0.0.1:${PORT[upstream]}" && ACTIVE+=(warden) ;;
        nginx) start_nginx nginx "${PORT[upstream]}" "" "" && ACTIVE+=(nginx) ;;
        haproxy)
            if ! find_tool haproxy >/dev/null; then
                STATUS[haproxy]="skipped (not installed)"
                warn "haproxy not installed; skipped"
                continue
            fi
            start_haproxy haproxy "${PORT[upstream]}" "" "" && ACTIVE+=(haproxy)
            ;;
    esac
    if [[ "$t" != direct && -n "${STATUS[$t]:-}" ]]; then
        warn "$t: ${STATUS[$t]}"
    elif [[ "$t" != direct ]]; then
        log "$t on 127.0.0.1:${PORT[$t]} (pid ${PID[$t]}, CPU $PROXY_CPU)"
    fi
done
((${#ACTIVE[@]} > 0)) || die "no target could be started"

measure_background

FIRST_RATE="${RATES%% *}"
if ((WARMUP > 0)); then
    for t in "${ACTIVE[@]}"; do
        log "warm-up $t (${WARMUP}s at $FIRST_RATE req/s, not counted)"
        run_oha "$t" "$FIRST_RATE" "$WARMUP" "$WORK/oha-$t-warmup.json" || warn "warm-up failed for $t"
    done
fi

# Keyed by "target/rate".
declare -A RPS=() P50=() P99=() P999=() ADD50=() ADD99=() RESP=() NON200=() ERRS=() UT=() ST=()
# Keyed by "target/rate/round".
declare -A R50=() R99=()

for ((round = 1; round <= ROUNDS; round++)); do
    for rate in $RATES; do
        for t in "${ACTIVE[@]}"; do
            [[ -n "${STATUS[$t]:-}" ]] && continue
            k="$t/$rate"
            out="$WORK/oha-$t-$rate-round$round.json"
            pid="${PID[$t]:-}"
            [[ "$t" == direct ]] && pid=""
            if [[ -n "$pid" ]]; then
                read -r u0 s0 < <(proc_ticks "$pid") || { STATUS[$t]="died before round $round"; continue; }
            fi
            if ! run_oha "$t" "$rate" "$DURATION" "$out"; then
                warn "oha failed for $t at $rate req/s, round $round:"
                cat "$out.err" >&2 || true
                STATUS[$t]="oha failed in round $round"
                continue
            fi
            if [[ -n "$pid" ]]; then
                read -r u1 s1 < <(proc_ticks "$pid") || { STATUS[$t]="died during round $round"; continue; }
                UT[$k]=$((${UT[$k]:-0} + u1 - u0))
                ST[$k]=$((${ST[$k]:-0} + s1 - s0))
            fi
            if ! parsed="$(parse_oha "$out")"; then
                warn "could not parse oha output for $t at $rate req/s, round $round"
                head -c 2000 "$out" >&2 || true
                STATUS[$t]="unparsable oha output in round $round"
                continue
            fi
            read -r rps p50 p99 p999 resp n200 errs <<<"$parsed"
            log "$(printf 'round %d/%d %6s req/s %-8s achieved %8.0f  p50 %7.1f us  p99 %8.1f us  p99.9 %8.1f us  errors %d' \
                "$round" "$ROUNDS" "$rate" "$t" "$rps" "$p50" "$p99" "$p999" "$errs")"
            RPS[$k]+="$rps "
            P50[$k]+="$p50 "
            P99[$k]+="$p99 "
            P999[$k]+="$p999 "
            RESP[$k]=$((${RESP[$k]:-0} + resp))
            NON200[$k]=$((${NON200[$k]:-0} + n200))
            ERRS[$k]=$((${ERRS[$k]:-0} + errs))
            ((n200 > 0 || errs > 0)) && warn "$t at $rate req/s round $round: $n200 non-200 answers, $errs errors"
            R50[$k/$round]="$p50"
            R99[$k/$round]="$p99"
        done
    done
done

# Added latency: the target's p50/p99 minus direct's in the same round and rate.
for rate in $RATES; do
    for t in "${ACTIVE[@]}"; do
        [[ "$t" == direct ]] && continue
        for ((round = 1; round <= ROUNDS; round++)); do
            a="${R50[$t/$rate/$round]:-}"; d="${R50[direct/$rate/$round]:-}"
            [[ -n "$a" && -n "$d" ]] || continue
            ADD50[$t/$rate]+="$(awk -v a="$a" -v b="$d" 'BEGIN { printf "%.1f", a - b }') "
            ADD99[$t/$rate]+="$(awk -v a="${R99[$t/$rate/$round]}" -v b="${R99[direct/$rate/$round]}" \
                'BEGIN { printf "%.1f", a - b }') "
        done
    done
done

# ----------------------------------------------------------------- report --

REPORT="$WORK/report.md"
{
    machine_line
    echo "Tools: $("$OHA_BIN" --version 2>/dev/null | head -n1), $(proxy_versions)"
    echo "Parameters: RATES=\"$RATES\" DURATION=${DURATION}s CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WARMUP=${WARMUP}s" \
        "LATENCY_CORRECTION=$LATENCY_CORRECTION; oha and upstream pinned to CPU $LOAD_CPU, proxy pinned to CPU $PROXY_CPU"
    echo
    echo "| rate (req/s) | target | achieved req/s | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | CPU µs/req | user / sys µs/req | proxy core busy | errors + non-200 |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for rate in $RATES; do
        for t in $TARGETS; do
            k="$t/$rate"
            if [[ -z "${RPS[$k]:-}" ]]; then
                echo "| $rate | $t | ${STATUS[$t]:-no data} | — | — | — | — | — | — | — | — | — |"
                continue
            fi
            n_rounds="$(wc -w <<<"${RPS[$k]}")"
            add50="—"; add99="—"; cpu="—"; split="—"; busy="—"
            if [[ -n "${ADD50[$k]:-}" ]]; then
                add50="$(fmt "$(median <<<"${ADD50[$k]}")" '%+.0f')"
                add99="$(fmt "$(median <<<"${ADD99[$k]}")" '%+.0f')"
            fi
            if [[ "$t" != direct ]]; then
                read -r c_tot c_user c_sys < <(us_per_req "${UT[$k]:-0}" "${ST[$k]:-0}" "${RESP[$k]}")
                cpu="$(fmt "$c_tot" '%.2f')"
                split="$(fmt "$c_user" '%.2f') / $(fmt "$c_sys" '%.2f')"
                busy="$(awk -v u="${UT[$k]:-0}" -v s="${ST[$k]:-0}" -v hz="$CLK_TCK" -v d="$((DURATION * n_rounds))" \
                    'BEGIN { printf "%.0f%%", (u + s) / hz / d * 100 }')"
            fi
            name="$t"
            [[ -n "${STATUS[$t]:-}" ]] && name="$t (${STATUS[$t]}; $n_rounds rounds)"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
                "$rate" "$name" "$(fmt "$(median <<<"${RPS[$k]}")" '%.0f')" \
                "$(fmt "$(median <<<"${P50[$k]}")" '%.0f')" "$(fmt "$(median <<<"${P99[$k]}")" '%.0f')" \
                "$(fmt "$(median <<<"${P999[$k]}")" '%.0f')" "$add50" "$add99" "$cpu" "$split" "$busy" \
                "$((${ERRS[$k]:-0} + ${NON200[$k]:-0}))"
        done
    done
} >"$REPORT"

cat "$REPORT"

fail=0
for t in $TARGETS; do
    if [[ -n "${STATUS[$t]:-}" && "${STATUS[$t]}" != skipped* ]]; then
        warn "$t: ${STATUS[$t]}"
        fail=1
    fi
    for rate in $RATES; do
        if ((${ERRS[$t/$rate]:-0} + ${NON200[$t/$rate]:-0} > 0)); then
            warn "$t at $rate req/s: ${ERRS[$t/$rate]:-0} errors, ${NON200[$t/$rate]:-0} non-200 answers"
            fail=1
        fi
    done
done
exit "$fail"
