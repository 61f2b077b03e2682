#!/usr/bin/env bash
# benches/h2.sh — HTTP/2: h2c clients against warden, nginx and haproxy (part
# "clients"), and warden in front of an HTTP/2 upstream (part "upstream").
#
# Usage:
#   benches/h2.sh            # full run (defaults below)
#   benches/h2.sh --quick    # smoke test: ROUNDS=1 DURATION=3 WARMUP=1
#   PARTS=upstream ROUNDS=7 benches/h2.sh
#
# Environment:
#   PARTS         "clients upstream" (default both), or one of them
#   DURATION      seconds per measured run (default 10)
#   ROUNDS        measured rounds (default 5)
#   WARMUP        seconds of one un-measured run per target and load before
#                 round 1 (default 2; 0 disables)
#   LOADS         h2load loads as CONNECTIONSxSTREAMS (default "1x10 32x10")
#   TARGETS       part "clients": subset/order of "direct warden nginx
#                 haproxy" (default all; haproxy skipped when not installed)
#   CONNECTIONS   part "upstream": wrk connections (default 32)
#   UPSTREAM_IDLE part "clients": idle upstream connections warden
#                 (limits.max_idle_upstream_per_route) and nginx (keepalive)
#                 keep (default 512; both default to 64 otherwise)
#   H2LOAD_LOG=0  do not ask h2load for its per-request log (then no p50/p99,
#                 only h2load's mean, sd and max); default 1
#   plus SKIP_BUILD, UPSTREAM_BIN, WARDEN_BIN, WARDEN_ARGS, OUT_DIR,
#   BUILD_TIMEOUT as described in benches/lib.sh (warden is never built here).
#
# Method:
#   * compare.sh's setup: 127.0.0.1 only; the proxy alone on CPU 1 with one
#     worker; the load generator and the bench upstream on CPU 0 (taskset).
#   * Part "clients": `h2load -t1 -cC -mS -D DURATION` over cleartext HTTP/2
#     by prior knowledge (h2load's default for http:// URLs) against
#       direct   the bench upstream with --h2c (HTTP/1.1 and h2c on one port);
#       warden   zero-config (role mcp): its listener takes h2c by prior
#                knowledge beside HTTP/1.1;
#       nginx    `listen ADDR http2;` (nginx 1.22's cleartext h2; from 1.25.1
#                the spelling is `http2 on;`, the old one still works);
#       haproxy  `bind ADDR proto h2`.
#     warden runs from a proxy.yaml (one mcp route, defaults but for the
#     idle-connection limit).  The proxies talk HTTP/1.1 keep-alive to the
#     same upstream: C × S concurrent streams need C × S upstream
#     connections, so warden and nginx keep UPSTREAM_IDLE idle ones (their
#     default of 64 would make them close and reopen upstream connections
#     all the time at 32 × 10, and the upstream's accept queue overflows:
#     1 s SYN retransmits); haproxy has no such limit.  Latency:
#     h2load prints min/max/mean/sd of the request time; p50/p99 come from
#     its --log-file (one line per request: microseconds until the end of the
#     response), which costs h2load some CPU on CPU 0 (H2LOAD_LOG=0 to skip).
#   * Part "upstream": HTTP/1.1 clients (`wrk -t1 -cCONNECTIONS --latency`)
#     through warden (config file, role mcp) to the bench upstream over
#       h1        plain HTTP/1.1 (what compare.sh measures);
#       tls-h1    TLS, the upstream offering only http/1.1 by ALPN;
#       tls-h2    TLS, the upstream offering h2 by ALPN: warden multiplexes
#                 its requests over one HTTP/2 connection.
#     warden speaks HTTP/2 to an upstream only when TLS ALPN selects it (an
#     http:// upstream is always HTTP/1.1: no h2c upstreams), so tls-h1 is
#     the like-for-like baseline of tls-h2.  The certificates are made with
#     openssl for the run (a CA and a leaf for IP 127.0.0.1; warden trusts
#     the CA through tls.ca_file).  The upstream logs the protocol each TLS
#     connection negotiated; the script checks warden really spoke h2.
#   * Rounds are interleaved (round 1: every load and target in turn, then
#     round 2, ...); medians over rounds are reported.
#   * CPU per request: utime and stime of the proxy process (fields 14 and 15
#     of /proc/PID/stat, all threads) before and after each measured run,
#     summed over the rounds and divided by the requests completed in them.
#
# Output: markdown tables on stdout, progress and warnings on stderr.
# Exit status: 0 on success; 1 if a requested target could not be started,
# died or saw failed requests (the tables are still printed); 2 on bad
# arguments.
#
# Requires: bash, taskset, curl (with HTTP/2), python3, openssl, wrk, h2load
# (Debian nghttp2-client; installed with apt-get when missing), nginx and
# haproxy (`apt-get install nginx-light haproxy`), cargo for the bench
# upstream unless SKIP_BUILD=1.

set -euo pipefail

BENCH=h2.sh
# shellcheck source=benches/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

parse_args "$@"

PARTS="${PARTS:-clients upstream}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-5}"
WARMUP="${WARMUP:-2}"
if [[ "$QUICK" == 1 ]]; then
    ROUNDS=1
    DURATION=3
    WARMUP=1
fi
LOADS="${LOADS:-1x10 32x10}"
TARGETS="${TARGETS:-direct warden nginx haproxy}"
CONNECTIONS="${CONNECTIONS:-32}"
H2LOAD_LOG="${H2LOAD_LOG:-1}"
UPSTREAM_IDLE="${UPSTREAM_IDLE:-512}"
check_uint DURATION ROUNDS WARMUP CONNECTIONS UPSTREAM_IDLE
if ((DURATION < 1 || ROUNDS < 1 || CONNECTIONS < 1)); then
    echo "$BENCH: DURATION, ROUNDS and CONNECTIONS must be >= 1" >&2
    exit 2
fi
for l in $LOADS; do
    [[ "$l" =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "$BENCH: LOADS entries are CxS, e.g. 32x10 (got '$l')" >&2; exit 2; }
done
for p in $PARTS; do
    case "$p" in
        clients | upstream) ;;
        *) echo "$BENCH: unknown part in PARTS: $p" >&2; exit 2 ;;
    esac
done
for t in $TARGETS; do
    case "$t" in
        direct | warden | nginx | haproxy) ;;
        *) echo "$BENCH: unknown target in TARGETS: $t" >&2; exit 2 ;;
    esac
done

bench_init

if [[ " $PARTS " == *" clients "* ]] && ! command -v h2load >/dev/null 2>&1; then
    apt_install nghttp2-client
fi
if [[ " $PARTS " == *" upstream "* ]]; then
    command -v wrk >/dev/null 2>&1 || apt_install wrk
    command -v openssl >/dev/null 2>&1 || die "openssl is required for part upstream"
fi

# to_us VALUE-WITH-UNIT → microseconds (h2load and wrk print us, ms, s).
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") f = 1; else if (u == "ms") f = 1e3; else if (u == "s") f = 1e6
        else if (u == "m") f = 6e7; else f = -1
        if (f < 0) print "nan"; else printf "%.1f\n", n * f
    }'
}

# -------------------------------------------------------------- h2load --

# run_h2load TARGET LOAD SECONDS OUTFILE [LOGFILE]
run_h2load() {
    local target="$1" load="$2" secs="$3" out="$4" logf="${5:-}"
    local c="${load%x*}" m="${load#*x}"
    local -a extra=()
    [[ -n "$logf" ]] && extra=(--log-file="$logf")
    timeout $((secs + 30)) taskset -c "$LOAD_CPU" h2load -t1 -c"$c" -m"$m" -D"$secs" \
        "${extra[@]}" "http://127.0.0.1:${PORT[$target]}/" >"$out" 2>&1
}

# parse_h2load FILE [LOGFILE] → "rps succeeded failed mean_us sd_us max_us p50_us p99_us"
parse_h2load() {
    local f="$1" logf="${2:-}" rps succ fail mean sd max pct="nan nan"
    rps="$(awk '/^finished in/ { print $4 }' "$f")"
    # requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout
    succ="$(awk '/^requests:/ { print $8 }' "$f")"
    fail="$(awk '/^requests:/ { print $10 + $12 + $14 }' "$f")"
    read -r max mean sd < <(awk '/^time for request:/ { print $5, $6, $7 }' "$f")
    [[ -n "$rps" && -n "$succ" && -n "${mean:-}" ]] || return 1
    if [[ -n "$logf" && -s "$logf" ]]; then
        pct="$(python3 - "$logf" <<'EOF'
import sys
v = []
with open(sys.argv[1]) as f:
    for line in f:
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            v.append(int(parts[2]))
v.sort()
if not v:
    print("nan nan")
else:
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print("%d %d" % (q(0.50), q(0.99)))
EOF
)"
    fi
    printf '%s %s %s %s %s %s %s\n' "${rps}" "$succ" "$fail" "$(to_us "$mean")" "$(to_us "$sd")" \
        "$(to_us "$max")" "$pct"
}

# ----------------------------------------------------------------- wrk --

# run_wrk TARGET SECONDS OUTFILE
run_wrk() {
    timeout $(($2 + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${2}s" \
        --timeout 5s --latency "http://127.0.0.1:${PORT[$1]}/" >"$3" 2>&1
}

# parse_wrk FILE → "rps p50_us p99_us requests errors"
parse_wrk() {
    local f="$1" rps p50 p99 reqs non2xx sockerr
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$f")"
    p50="$(awk '$1 == "50%" { print $2 }' "$f")"
    p99="$(awk '$1 == "99%" { print $2 }' "$f")"
    reqs="$(awk '/ requests in / { print $1 }' "$f")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")"
    sockerr="$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" && -n "$reqs" ]] || return 1
    printf '%s %s %s %s %s\n' "$rps" "$(to_us "$p50")" "$(to_us "$p99")" "$reqs" \
        $((${non2xx:-0} + ${sockerr:-0}))
}

# ------------------------------------------------------- measuring rounds --

# Keyed by "target/load"; a round's figures are appended, space-separated.
declare -A RPS=() LAT_A=() LAT_B=() LAT_C=() LAT_D=() LAT_E=() REQS=() FAILS=() UT=() ST=()

# measure TOOL TARGET LOAD ROUND: one measured run (TOOL h2load or wrk).
measure() {
    local tool="$1" t="$2" load="$3" round="$4" k="$2/$3" pid="" u0 s0 u1 s1 parsed out logf=""
    out="$WORK/$tool-$t-$load-round$round.txt"
    [[ "$t" != direct ]] && pid="${PID[$t]}"
    if [[ -n "$pid" ]]; then
        read -r u0 s0 < <(proc_ticks "$pid") || { STATUS[$t]="died before round $round"; return 1; }
    fi
    if [[ "$tool" == h2load ]]; then
        [[ "$H2LOAD_LOG" == 1 ]] && logf="$WORK/h2load-$t-$load-round$round.log"
        run_h2load "$t" "$load" "$DURATION" "$out" "$logf" || {
            warn "h2load failed for $t ($load) round $round:"; tail -n 20 "$out" >&2
            STATUS[$t]="h2load failed in round $round"; return 1; }
    else
        run_wrk "$t" "$DURATION" "$out" || {
            warn "wrk failed for $t round $round:"; cat "$out" >&2
            STATUS[$t]="wrk failed in round $round"; return 1; }
    fi
    if [[ -n "$pid" ]]; then
        read -r u1 s1 < <(proc_ticks "$pid") || { STATUS[$t]="died during round $round"; return 1; }
        UT[$k]=$((${UT[$k]:-0} + u1 - u0))
        ST[$k]=$((${ST[$k]:-0} + s1 - s0))
    fi
    if [[ "$tool" == h2load ]]; then
        parsed="$(parse_h2load "$out" "$logf")" || {
            warn "could not parse h2load output for $t ($load) round $round:"; cat "$out" >&2
            STATUS[$t]="unparsable h2load output"; return 1; }
        local rps succ fail mean sd max p50 p99
        read -r rps succ fail mean sd max p50 p99 <<<"$parsed"
        # Drop the log once read: at saturation it is tens of MB per run.
        [[ -n "$logf" ]] && rm -f "$logf"
        log "$(printf 'round %d/%d %-6s %-8s %9.0f req/s  p50 %7s us  p99 %8s us  mean %7.1f us  max %9.1f us  failed %d' \
            "$round" "$ROUNDS" "$load" "$t" "$rps" "$p50" "$p99" "$mean" "$max" "$fail")"
        RPS[$k]+="$rps "; LAT_A[$k]+="$p50 "; LAT_B[$k]+="$p99 "
        LAT_C[$k]+="$mean "; LAT_D[$k]+="$sd "; LAT_E[$k]+="$max "
        REQS[$k]=$((${REQS[$k]:-0} + succ))
        FAILS[$k]=$((${FAILS[$k]:-0} + fail))
        ((fail == 0)) || warn "$t ($load) round $round: $fail failed/errored/timed-out requests"
    else
        parsed="$(parse_wrk "$out")" || {
            warn "could not parse wrk output for $t round $round:"; cat "$out" >&2
            STATUS[$t]="unparsable wrk output"; return 1; }
        local rps p50 p99 reqs errs
        read -r rps p50 p99 reqs errs <<<"$parsed"
        log "$(printf 'round %d/%d %-14s %9.0f req/s  p50 %8.1f us  p99 %8.1f us  errors %d' \
            "$round" "$ROUNDS" "$t" "$rps" "$p50" "$p99" "$errs")"
        RPS[$k]+="$rps "; LAT_A[$k]+="$p50 "; LAT_B[$k]+="$p99 "
        REQS[$k]=$((${REQS[$k]:-0} + reqs))
        FAILS[$k]=$((${FAILS[$k]:-0} + errs))
        ((errs == 0)) || warn "$t round $round: $errs non-2xx/3xx answers or socket errors"
    fi
    return 0
}

# cpu_cells TARGET/LOAD ROUNDS → "cpu | user / sys | busy" cells
cpu_cells() {
    local k="$1" n="$2" c_tot c_user c_sys busy
    read -r c_tot c_user c_sys < <(us_per_req "${UT[$k]:-0}" "${ST[$k]:-0}" "${REQS[$k]:-0}")
    busy="$(awk -v u="${UT[$k]:-0}" -v s="${ST[$k]:-0}" -v hz="$CLK_TCK" -v d="$((DURATION * n))" \
        'BEGIN { printf "%.0f%%", (u + s) / hz / d * 100 }')"
    printf '%s | %s / %s | %s' "$(fmt "$c_tot" '%.2f')" "$(fmt "$c_user" '%.2f')" "$(fmt "$c_sys" '%.2f')" "$busy"
}

# ------------------------------------------------------------------ main --

build_upstream

declare -a CLIENT_TARGETS=() UPSTREAM_TARGETS=()

# warden_with_config NAME UPSTREAM_URL [CA_FILE]: warden from a proxy.yaml
# with one mcp route, every other setting at its default but
# limits.max_idle_upstream_per_route when WARDEN_IDLE is set.
warden_with_config() {
    local name="$1" url="$2" ca="${3:-}" port admin cfg="$WORK/$1.yaml"
    free_port; port="$FREE_PORT"
    free_port; admin="$FREE_PORT"
    {
        echo "version: 1"
        if [[ -n "${WARDEN_IDLE:-}" ]]; then
            echo "limits:"
            echo "  max_idle_upstream_per_route: $WARDEN_IDLE"
        fi
        echo "admin:"
        echo "  listen: 127.0.0.1:$admin"
        echo "connections:"
        echo "  - name: bench"
        echo "    mcp:"
        echo "      listen: 127.0.0.1:$port"
        echo "      upstream: $url"
        if [[ -n "$ca" ]]; then
            echo "      tls:"
            echo "        ca_file: $ca"
        fi
    } >"$cfg"
    start_warden "$name" --config "$cfg" "$port"
}


if [[ " $PARTS " == *" clients "* ]]; then
    start_upstream up-h2c --h2c
    for t in $TARGETS; do
        case "$t" in
            direct) PORT[direct]="${PORT[up-h2c]}"; CLIENT_TARGETS+=(direct); continue ;;
            warden)
                WARDEN_IDLE="$UPSTREAM_IDLE" warden_with_config warden "http://127.0.0.1:${PORT[up-h2c]}" &&
                    CLIENT_TARGETS+=(warden)
                ;;
            nginx)
                NGINX_KEEPALIVE="$UPSTREAM_IDLE" start_nginx nginx "${PORT[up-h2c]}" http2 "" --http2-prior-knowledge && CLIENT_TARGETS+=(nginx) ;;
            haproxy)
                if ! find_tool haproxy >/dev/null; then
                    STATUS[haproxy]="skipped (not installed)"
                else
                    start_haproxy haproxy "${PORT[up-h2c]}" "proto h2" "" --http2-prior-knowledge &&
                        CLIENT_TARGETS+=(haproxy)
                fi
                ;;
        esac
        if [[ -n "${STATUS[$t]:-}" ]]; then
            warn "$t: ${STATUS[$t]}"
        else
            log "$t on 127.0.0.1:${PORT[$t]} (pid ${PID[$t]}, CPU $PROXY_CPU)"
        fi
    done
    # h2load must really speak h2 to each: a proxy that fell back to
    # HTTP/1.1 would make the comparison meaningless.
    for t in "${CLIENT_TARGETS[@]}"; do
        proto="$(curl -s -o /dev/null -w '%{http_version}' --max-time 2 --http2-prior-knowledge \
            "http://127.0.0.1:${PORT[$t]}/" || true)"
        [[ "$proto" == 2 ]] || warn "$t answered h2c prior knowledge with HTTP version '${proto:-none}'"
    done
fi

make_certs() {
    local d="$WORK/certs"
    mkdir -p "$d"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=warden bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/leaf.key" -out "$d/leaf.csr" -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/leaf.ext"
        openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -out "$d/leaf.pem" -days 2 -extfile "$d/leaf.ext"
    } >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl could not make the certificates"; }
}

if [[ " $PARTS " == *" upstream "* ]]; then
    make_certs
    start_upstream up-h1
    start_upstream up-tls-h1 --tls "$WORK/certs/leaf.pem" "$WORK/certs/leaf.key" --alpn http/1.1
    start_upstream up-tls-h2 --tls "$WORK/certs/leaf.pem" "$WORK/certs/leaf.key" --alpn h2,http/1.1
    for v in h1 tls-h1 tls-h2; do
        if [[ "$v" == h1 ]]; then
            warden_with_config "warden-$v" "http://127.0.0.1:${PORT[up-$v]}" || true
        else
            warden_with_config "warden-$v" "https://127.0.0.1:${PORT[up-$v]}" "$WORK/certs/ca.pem" || true
        fi
        if [[ -n "${STATUS[warden-$v]:-}" ]]; then
            warn "warden-$v: ${STATUS[warden-$v]}"
        else
            UPSTREAM_TARGETS+=("warden-$v")
            log "warden-$v on 127.0.0.1:${PORT[warden-$v]} (pid ${PID[warden-$v]}, CPU $PROXY_CPU)"
        fi
    done
fi

((${#CLIENT_TARGETS[@]} + ${#UPSTREAM_TARGETS[@]} > 0)) || die "no target could be started"

measure_background

if ((WARMUP > 0)); then
    for t in "${CLIENT_TARGETS[@]}"; do
        for load in $LOADS; do
            log "warm-up $t ($load, ${WARMUP}s, not counted)"
            run_h2load "$t" "$load" "$WARMUP" "$WORK/h2load-$t-$load-warmup.txt" || warn "warm-up failed for $t"
        done
    done
    for t in "${UPSTREAM_TARGETS[@]}"; do
        log "warm-up $t (${WARMUP}s, not counted)"
        run_wrk "$t" "$WARMUP" "$WORK/wrk-$t-warmup.txt" || warn "warm-up failed for $t"
    done
fi

for ((round = 1; round <= ROUNDS; round++)); do
    for load in $LOADS; do
        for t in "${CLIENT_TARGETS[@]}"; do
            [[ -n "${STATUS[$t]:-}" ]] && continue
            measure h2load "$t" "$load" "$round" || warn "$t: ${STATUS[$t]} — skipping its remaining rounds"
        done
    done
    for t in "${UPSTREAM_TARGETS[@]}"; do
        [[ -n "${STATUS[$t]:-}" ]] && continue
        measure wrk "$t" "c$CONNECTIONS" "$round" || warn "$t: ${STATUS[$t]} — skipping its remaining rounds"
    done
done

# What each TLS upstream negotiated, from its own log (one line per TLS
# connection: "tls alpn=h2" or "tls alpn=http/1.1" or "tls alpn=none").
NEGOTIATED=()
for v in tls-h1 tls-h2; do
    [[ -n "${PID[up-$v]:-}" ]] || continue
    n="$(grep -c '^tls alpn=' "$WORK/up-$v.err" || true)"
    protos="$(grep '^tls alpn=' "$WORK/up-$v.err" | sort | uniq -c | awk '{ printf "%s%s × %s", sep, $1, substr($3, 6); sep = ", " }')"
    NEGOTIATED+=("warden-$v: ${n:-0} upstream TLS connections (${protos:-none})")
done
if [[ -n "${PID[up-tls-h2]:-}" ]] && ! grep -q '^tls alpn=h2$' "$WORK/up-tls-h2.err"; then
    warn "warden never negotiated h2 with the tls-h2 upstream"
    STATUS[warden-tls-h2]="${STATUS[warden-tls-h2]:-no h2 upstream connection}"
fi

# ----------------------------------------------------------------- report --

REPORT="$WORK/report.md"
{
    machine_line
    echo "Tools: $(h2load --version 2>/dev/null | head -n1), $(wrk -v 2>&1 | head -n1 | awk '{ print $1 " " $2 }'), $(proxy_versions)"
    echo "Parameters: DURATION=${DURATION}s ROUNDS=$ROUNDS WARMUP=${WARMUP}s LOADS=\"$LOADS\" CONNECTIONS=$CONNECTIONS" \
        "H2LOAD_LOG=$H2LOAD_LOG; load generator and upstream pinned to CPU $LOAD_CPU, proxy pinned to CPU $PROXY_CPU"
    if ((${#CLIENT_TARGETS[@]} > 0)); then
        echo
        echo "HTTP/2 clients (h2load, cleartext h2 by prior knowledge; proxies → upstream over HTTP/1.1); medians over rounds:"
        echo
        echo "| connections × streams | target | req/s | p50 µs | p99 µs | mean µs | sd µs | max µs | CPU µs/req | user / sys µs/req | proxy core busy | failed |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for load in $LOADS; do
            for t in $TARGETS; do
                k="$t/$load"
                if [[ -z "${RPS[$k]:-}" ]]; then
                    echo "| $load | $t | ${STATUS[$t]:-no data} | — | — | — | — | — | — | — | — | — |"
                    continue
                fi
                n_rounds="$(wc -w <<<"${RPS[$k]}")"
                cells="— | — / — | —"
                [[ "$t" != direct ]] && cells="$(cpu_cells "$k" "$n_rounds")"
                name="$t"
                [[ -n "${STATUS[$t]:-}" ]] && name="$t (${STATUS[$t]}; $n_rounds rounds)"
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$load" "$name" \
                    "$(fmt "$(median <<<"${RPS[$k]}")" '%.0f')" \
                    "$(fmt "$(median <<<"${LAT_A[$k]}")" '%.0f')" "$(fmt "$(median <<<"${LAT_B[$k]}")" '%.0f')" \
                    "$(fmt "$(median <<<"${LAT_C[$k]}")" '%.0f')" "$(fmt "$(median <<<"${LAT_D[$k]}")" '%.0f')" \
                    "$(fmt "$(median <<<"${LAT_E[$k]}")" '%.0f')" "$cells" "${FAILS[$k]:-0}"
            done
        done
    fi
    if ((${#UPSTREAM_TARGETS[@]} > 0)) || [[ " $PARTS " == *" upstream "* ]]; then
        echo
        echo "warden → upstream protocol (wrk -t1 -c$CONNECTIONS, HTTP/1.1 clients); medians over rounds:"
        echo
        echo "| upstream | req/s | p50 µs | p99 µs | CPU µs/req | user / sys µs/req | proxy core busy | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|"
        for t in warden-h1 warden-tls-h1 warden-tls-h2; do
            k="$t/c$CONNECTIONS"
            if [[ -z "${RPS[$k]:-}" ]]; then
                echo "| ${t#warden-} | ${STATUS[$t]:-no data} | — | — | — | — | — | — |"
                continue
            fi
            n_rounds="$(wc -w <<<"${RPS[$k]}")"
            name="${t#warden-}"
            [[ -n "${STATUS[$t]:-}" ]] && name="$name (${STATUS[$t]}; $n_rounds rounds)"
            printf '| %s | %s | %s | %s | %s | %s |\n' "$name" \
                "$(fmt "$(median <<<"${RPS[$k]}")" '%.0f')" \
                "$(fmt "$(median <<<"${LAT_A[$k]}")" '%.0f')" "$(fmt "$(median <<<"${LAT_B[$k]}")" '%.0f')" \
                "$(cpu_cells "$k" "$n_rounds")" "${FAILS[$k]:-0}"
        done
        if ((${#NEGOTIATED[@]} > 0)); then
            echo
            printf 'Negotiated: %s.\n' "$(IFS=';'; echo "${NEGOTIATED[*]}" | sed 's/;/; /g')"
        fi
    fi
} >"$REPORT"

cat "$REPORT"

fail=0
for k in "${!FAILS[@]}"; do
    ((${FAILS[$k]} == 0)) || { warn "${k}: ${FAILS[$k]} failed requests"; fail=1; }
done
for t in "${!STATUS[@]}"; do
    [[ "${STATUS[$t]}" == skipped* ]] && continue
    warn "$t: ${STATUS[$t]}"
    fail=1
done
exit "$fail"
