#!/usr/bin/env bash
# benches/compare.sh — loopback throughput/latency/CPU comparison of warden
# against nginx and haproxy, with a direct (no proxy) baseline.
#
# Usage:
#   benches/compare.sh            # full run (defaults below)
#   benches/compare.sh --quick    # smoke test: ROUNDS=1 DURATION=3
#   CONNECTIONS=64 DURATION=20 ROUNDS=7 benches/compare.sh
#
# Environment:
#   CONNECTIONS   wrk connections (default 32)
#   DURATION      seconds per measured wrk round (default 10)
#   ROUNDS        measured rounds per target (default 5)
#   WARMUP        seconds of one un-measured wrk run per target before round 1
#                 (default 2; 0 disables)
#   TARGETS       subset/order of "direct warden nginx haproxy warden_b"
#                 (default: the first four)
#   SKIP_BUILD=1  do not run cargo; use the existing release binaries
#   WARDEN_BIN    warden binary (default target/release/warden)
#   WARDEN_ARGS   extra arguments for `warden run` (e.g. "--role api")
#   WARDEN_B_BIN  a second warden binary, the target `warden_b`, run like the
#                 first and interleaved with it: an A/B of two builds in one run
#                 (e.g. the bench-only `--features bench-bare` build)
#   WARDEN_LABEL  how to name warden's build in the report (default: the git
#                 revision, or `--version` and path for a custom WARDEN_BIN)
#   OUT_DIR       if set, keep raw wrk outputs, proxy logs and the table there
#   BUILD_TIMEOUT seconds allowed for each cargo build (default 1800)
#   IDLE_WAIT     before each measured round, wait up to this many seconds
#                 for the machine to be < 10% busy (default 0: don't wait)
#   MAX_FOREIGN   discard and re-run (up to RETRIES times, default 3) a round
#                 in which more than this % of all CPUs went to work other
#                 than the benchmark's (default: keep every round)
#
# Method:
#   * Everything runs on 127.0.0.1 only.
#   * CPU pinning (the machine this was written for has 2 cores):
#       - the proxy under test runs alone on CPU 1 (taskset -c 1), configured
#         with exactly one worker/thread (nginx worker_processes 1 and
#         master_process off, haproxy nbthread 1, warden's tokio runtime sizes
#         itself from the affinity mask, so one worker);
#       - wrk (one thread) and the bench upstream (current-thread tokio) share
#         CPU 0: `taskset -c 0 wrk -t1 -cN -dDs --latency`.
#     The "direct" baseline is wrk -> upstream with nothing on CPU 1.
#   * Rounds are interleaved (round 1: direct warden nginx haproxy, round 2:
#     ...), so slow drifts of the machine hit all targets alike.  Medians over
#     rounds are reported.
#   * CPU per request: utime+stime (fields 14 and 15 of /proc/PID/stat, in
#     clock ticks of `getconf CLK_TCK`, summed over all threads of the process)
#     of the proxy process, read before and after each measured round, summed
#     over the rounds and divided by the requests wrk completed in them.
#   * Peak RSS: VmHWM of /proc/PID/status after the last round.
#   * Non-2xx/3xx responses and socket errors reported by wrk are summed over
#     the measured rounds, shown as columns and warned about.
#   * "proxy core busy" is the proxy's CPU time over the measured wall time:
#     ~100% means the proxy's core was the bottleneck.
#   * The machine should be otherwise idle; the share of CPU busy during one
#     second before the first round is printed (and warned about above 10%),
#     and so is the "foreign" CPU of each round: busy ticks of all CPUs in
#     /proc/stat (incl. steal) minus the ticks of every process started here
#     and of this shell's reaped children, over nproc × round wall time.
#
# Output: a markdown table on stdout, progress and warnings on stderr.
# Exit status: 0 on success; 1 if any requested target could not be started,
# died, or saw non-2xx/3xx responses or socket errors (the table is still
# printed); 2 on bad arguments.
#
# Requires: Debian/Ubuntu (installs wrk, nginx-light, haproxy with apt-get if
# any is missing), cargo, curl, taskset, python3 (for free ports; optional).
# Every process started here is killed on exit, including on failure.

set -euo pipefail

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-5}"
WARMUP="${WARMUP:-2}"
if [[ "$QUICK" == 1 ]]; then
    ROUNDS=1
    DURATION=3
fi
TARGETS="${TARGETS:-direct warden nginx haproxy}"
IDLE_WAIT="${IDLE_WAIT:-0}"
MAX_FOREIGN="${MAX_FOREIGN:-}"
RETRIES="${RETRIES:-3}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-1800}"
OUT_DIR="${OUT_DIR:-}"

if [[ -n "$MAX_FOREIGN" && ! "$MAX_FOREIGN" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "compare.sh: MAX_FOREIGN must be a number (got '$MAX_FOREIGN')" >&2
    exit 2
fi
for v in CONNECTIONS DURATION ROUNDS WARMUP BUILD_TIMEOUT IDLE_WAIT RETRIES; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
        echo "compare.sh: $v must be a non-negative integer (got '${!v}')" >&2
        exit 2
    fi
done
if ((CONNECTIONS < 1 || DURATION < 1 || ROUNDS < 1)); then
    echo "compare.sh: CONNECTIONS, DURATION and ROUNDS must be >= 1" >&2
    exit 2
fi
for t in $TARGETS; do
    case "$t" in
        direct | warden | nginx | haproxy | warden_b) ;;
        *) echo "compare.sh: unknown target in TARGETS: $t" >&2; exit 2 ;;
    esac
done

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
UPSTREAM_DIR="$SCRIPT_DIR/upstream"
UPSTREAM_BIN="$UPSTREAM_DIR/target/release/warden-bench-upstream"
WARDEN_BIN="${WARDEN_BIN:-$REPO_ROOT/target/release/warden}"
WARDEN_B_BIN="${WARDEN_B_BIN:-}"
if [[ " $TARGETS " == *" warden_b "* && -z "$WARDEN_B_BIN" ]]; then
    echo "compare.sh: the target warden_b needs WARDEN_B_BIN" >&2
    exit 2
fi

PROXY_CPU=1
LOAD_CPU=0

log() { printf '[compare] %s\n' "$*" >&2; }
warn() { printf '[compare] WARNING: %s\n' "$*" >&2; }
die() { printf '[compare] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup --

WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-compare.XXXXXX")"
declare -a STARTED_PIDS=()

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local i
    for pid in "${STARTED_PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$OUT_DIR" && -d "$WORK" ]]; then
        mkdir -p "$OUT_DIR"
        cp -r "$WORK"/. "$OUT_DIR"/ 2>/dev/null || true
        log "raw outputs kept in $OUT_DIR"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ environment --

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

ensure_packages() {
    local missing=0
    command -v wrk >/dev/null 2>&1 || missing=1
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing=1
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing=1
    if [[ "$missing" == 1 ]]; then
        log "installing wrk nginx-light haproxy with apt-get"
        as_root timeout 600 apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive timeout 900 \
            apt-get install -y wrk nginx-light haproxy
    fi
    local tool
    for tool in taskset curl cargo getconf; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
    done
}

# nginx and haproxy live in /usr/sbin, which is not always on a user's PATH.
find_tool() {
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    elif [[ -x "/usr/sbin/$1" ]]; then
        echo "/usr/sbin/$1"
    else
        return 1
    fi
}

# free_port: sets FREE_PORT to a free TCP port on 127.0.0.1 (no subshell, so
# the ports already handed out are remembered).  python3 asks the kernel; the
# fallback probes high ports (bounded number of tries) for one nobody answers
# on.
declare -a TAKEN_PORTS=()
FREE_PORT=""
free_port() {
    local p="" i
    for ((i = 0; i < 50; i++)); do
        if command -v python3 >/dev/null 2>&1; then
            p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
        else
            p=$((20000 + RANDOM % 40000))
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                continue
            fi
        fi
        if [[ " ${TAKEN_PORTS[*]} " != *" $p "* ]]; then
            TAKEN_PORTS+=("$p")
            FREE_PORT="$p"
            return 0
        fi
    done
    die "could not find a free port"
}

# ------------------------------------------------------------------ build --

build() {
    if [[ "$SKIP_BUILD" == 1 ]]; then
        log "SKIP_BUILD=1: using existing binaries"
    else
        log "building bench upstream (release)"
        timeout "$BUILD_TIMEOUT" cargo build --release --quiet \
            --manifest-path "$UPSTREAM_DIR/Cargo.toml" \
            --target-dir "$UPSTREAM_DIR/target" ||
            die "bench upstream build failed"
        if [[ " $TARGETS " == *" warden "* ]]; then
            log "building warden (cargo build --release --bin warden)"
            if ! (cd "$REPO_ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --quiet --bin warden); then
                warn "warden build failed; its row will be marked unavailable"
                WARDEN_BUILD_FAILED=1
            fi
        fi
    fi
    [[ -x "$UPSTREAM_BIN" ]] || die "bench upstream binary missing: $UPSTREAM_BIN"
}
WARDEN_BUILD_FAILED=0

# ------------------------------------------------------------- processes --

# wait_http NAME PID PORT: up to 10 s for a 200 through 127.0.0.1:PORT.
wait_http() {
    local name="$1" pid="$2" port="$3" i code
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            warn "$name (pid $pid) exited during startup"
            return 1
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null || true)"
        if [[ "$code" == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    warn "$name did not answer 200 on 127.0.0.1:$port within 10 s (last status: ${code:-none})"
    return 1
}

UPSTREAM_PORT=""
start_upstream() {
    local out="$WORK/upstream.out" i addr=""
    taskset -c "$LOAD_CPU" "$UPSTREAM_BIN" 0 >"$out" 2>"$WORK/upstream.err" &
    STARTED_PIDS+=("$!")
    UPSTREAM_PID=$!
    for ((i = 0; i < 100; i++)); do
        addr="$(head -n1 "$out" 2>/dev/null || true)"
        [[ -n "$addr" ]] && break
        kill -0 "$UPSTREAM_PID" 2>/dev/null || die "bench upstream exited: $(cat "$WORK/upstream.err")"
        sleep 0.1
    done
    [[ "$addr" =~ ^127\.0\.0\.1:([0-9]+)$ ]] || die "bench upstream printed no address (got '$addr')"
    UPSTREAM_PORT="${BASH_REMATCH[1]}"
    TAKEN_PORTS+=("$UPSTREAM_PORT")
    wait_http upstream "$UPSTREAM_PID" "$UPSTREAM_PORT" || die "bench upstream not serving"
    log "upstream on 127.0.0.1:$UPSTREAM_PORT (pid $UPSTREAM_PID, CPU $LOAD_CPU)"
}

declare -A PORT=() PID=() STATUS=()

# start_warden [NAME BIN]: NAME is the target (warden or warden_b), BIN its binary.
start_warden() {
    local name="${1:-warden}" bin="${2:-$WARDEN_BIN}" port admin
    if [[ "$name" == warden && "$WARDEN_BUILD_FAILED" == 1 ]] || [[ ! -x "$bin" ]]; then
        STATUS[$name]="unavailable (no binary)"
        return 1
    fi
    free_port; port="$FREE_PORT"
    free_port; admin="$FREE_PORT"
    local -a extra=()
    read -r -a extra <<<"${WARDEN_ARGS:-}"
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$bin" run \
        --listen "127.0.0.1:$port" \
        --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
        --admin "127.0.0.1:$admin" \
        --log-format json "${extra[@]}" >"$WORK/$name.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[$name]=$!
    PORT[$name]="$port"
    if ! wait_http "$name" "${PID[$name]}" "$port"; then
        STATUS[$name]="unavailable (did not start)"
        tail -n 20 "$WORK/$name.log" >&2 || true
        return 1
    fi
}

start_nginx() {
    local port dir="$WORK/nginx" bin="$NGINX_BIN"
    free_port; port="$FREE_PORT"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# Generated by benches/compare.sh
worker_processes 1;
master_process off;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    # nginx closes a keep-alive connection after 1000 requests by default
    # (client and upstream side); warden and haproxy have no such limit, so
    # lift it to keep the comparison about proxying, not reconnecting.
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stdout.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[nginx]=$!
    PORT[nginx]="$port"
    if ! wait_http nginx "${PID[nginx]}" "$port"; then
        STATUS[nginx]="unavailable (did not start)"
        cat "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
        return 1
    fi
}

start_haproxy() {
    local port dir="$WORK/haproxy" bin="$HAPROXY_BIN"
    free_port; port="$FREE_PORT"
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
# Generated by benches/compare.sh (no log directives: logging off)
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 30s

frontend bench_fe
    bind 127.0.0.1:$port
    default_backend bench_be

backend bench_be
    server up1 127.0.0.1:$UPSTREAM_PORT
EOF
    timeout 10 "$bin" -c -q -f "$dir/haproxy.cfg" || die "haproxy rejected its config"
    taskset -c "$PROXY_CPU" "$bin" -db -f "$dir/haproxy.cfg" >"$dir/stdout.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[haproxy]=$!
    PORT[haproxy]="$port"
    if ! wait_http haproxy "${PID[haproxy]}" "$port"; then
        STATUS[haproxy]="unavailable (did not start)"
        cat "$dir/stdout.log" >&2 || true
        return 1
    fi
}

start_proxy() {
    case "$1" in
        warden) start_warden ;;
        warden_b) start_warden warden_b "$WARDEN_B_BIN" ;;
        nginx) start_nginx ;;
        haproxy) start_haproxy ;;
    esac
}

# --------------------------------------------------------------- measuring --

CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"
FOREIGN=""

# cpu_ticks PID: utime+stime (all threads) in clock ticks.  The comm field
# (2) may hold spaces, so split after the last ')'.
cpu_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    # rest starts at field 3 (state); utime/stime are fields 14/15 → 12th/13th here.
    awk '{ print $12 + $13 }' <<<"$rest"
}

# user_ticks PID: utime alone (field 14).
user_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    awk '{ print $12 }' <<<"$rest"
}

# our_ticks: CPU ticks used so far by everything this script started: the
# started servers (alive ones), this shell and the children it has reaped
# (wrk, curl, awk, ...: fields 16 and 17, cutime and cstime, of /proc/$$/stat).
our_ticks() {
    local total=0 pid t stat rest
    for pid in "${STARTED_PIDS[@]}"; do
        t="$(cpu_ticks "$pid")" || t=0
        total=$((total + t))
    done
    stat="$(cat "/proc/$$/stat")"
    rest="${stat##*) }"
    t="$(awk '{ print $12 + $13 + $14 + $15 }' <<<"$rest")"
    echo $((total + t))
}

# sys_ticks: busy ticks of all CPUs (user nice system irq softirq steal).
sys_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

now_ns() { date +%s%N; }

vm_hwm_kb() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# to_us VALUE-WITH-UNIT → microseconds (wrk prints us, ms, s, m, h).
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") f = 1; else if (u == "ms") f = 1e3; else if (u == "s") f = 1e6
        else if (u == "m") f = 6e7; else if (u == "h") f = 3.6e9; else f = -1
        if (f < 0) print "nan"; else printf "%.1f\n", n * f
    }'
}

# parse_wrk FILE → "rps p50_us p99_us requests non2xx socket_errors"
parse_wrk() {
    local f="$1" rps p50 p99 reqs non2xx sockerr
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$f")"
    p50="$(awk '$1 == "50%" { print $2 }' "$f")"
    p99="$(awk '$1 == "99%" { print $2 }' "$f")"
    reqs="$(awk '/ requests in / { print $1 }' "$f")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")"
    sockerr="$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")"
    [[ -n "$rps" && -n "$p50" && -n "$p99" && -n "$reqs" ]] || return 1
    printf '%s %s %s %s %s %s\n' "$rps" "$(to_us "$p50")" "$(to_us "$p99")" \
        "$reqs" "${non2xx:-0}" "${sockerr:-0}"
}

# run_wrk TARGET SECONDS OUTFILE
run_wrk() {
    local target="$1" secs="$2" out="$3"
    timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" \
        --timeout 5s --latency "http://127.0.0.1:${PORT[$target]}/" >"$out" 2>&1
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

declare -A RPS=() P50=() P99=() REQS=() NON2XX=() SOCKERR=() TICKS=() UTICKS=() HWM=()

# measure_round TARGET ROUND LAST: one measured wrk run.  Returns 0 and
# records the round, 1 if the target failed (STATUS set), 2 if the round was
# discarded because more than MAX_FOREIGN % of the machine's CPU went
# elsewhere (never when LAST is 1: the last attempt is kept with a warning).
measure_round() {
    local target="$1" round="$2" last="$3" out pid="" t0="" t1="" u0="" u1="" parsed
    local rps p50 p99 reqs n2 se cpu_note="" s0 s1 o0 o1 w0 w1 foreign
    out="$WORK/wrk-$target-round$round.txt"
    if [[ "$target" != direct ]]; then
        pid="${PID[$target]}"
    fi
    if [[ -n "$pid" ]]; then
        t0="$(cpu_ticks "$pid")" || { STATUS[$target]="died before round $round"; return 1; }
        u0="$(user_ticks "$pid")" || u0=0
    fi
    o0="$(our_ticks)"; s0="$(sys_ticks)"; w0="$(now_ns)"
    if ! run_wrk "$target" "$DURATION" "$out"; then
        warn "wrk failed for $target round $round:"
        cat "$out" >&2 || true
        STATUS[$target]="wrk failed in round $round"
        return 1
    fi
    if [[ -n "$pid" ]]; then
        t1="$(cpu_ticks "$pid")" || { STATUS[$target]="died during round $round"; return 1; }
        u1="$(user_ticks "$pid")" || u1="$u0"
        cpu_note="proxy cpu $((t1 - t0)) ticks"
    fi
    w1="$(now_ns)"; s1="$(sys_ticks)"; o1="$(our_ticks)"
    # CPU time nobody of ours used (other processes, unattributed kernel work,
    # hypervisor steal), as a share of all CPUs over the round.
    foreign="$(awk -v s="$((s1 - s0))" -v o="$((o1 - o0))" -v ns="$((w1 - w0))" \
        -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN {
            f = (s - o) / (ns / 1e9 * hz * n) * 100; if (f < 0) f = 0; printf "%.1f", f }')"
    if ! parsed="$(parse_wrk "$out")"; then
        warn "could not parse wrk output for $target round $round:"
        cat "$out" >&2 || true
        STATUS[$target]="unparsable wrk output in round $round"
        return 1
    fi
    read -r rps p50 p99 reqs n2 se <<<"$parsed"
    log "$(printf 'round %d/%d %-8s %10.0f req/s  p50 %8.1f us  p99 %8.1f us  foreign %5.1f%%  %s' \
        "$round" "$ROUNDS" "$target" "$rps" "$p50" "$p99" "$foreign" "$cpu_note")"
    if [[ -n "$MAX_FOREIGN" ]] && awk -v f="$foreign" -v m="$MAX_FOREIGN" 'BEGIN { exit !(f > m) }'; then
        if [[ "$last" != 1 ]]; then
            return 2
        fi
        warn "$target round $round: ${foreign}% foreign CPU after $RETRIES retries; kept"
    fi
    if [[ -n "$pid" ]]; then
        TICKS[$target]=$((${TICKS[$target]:-0} + t1 - t0))
        UTICKS[$target]=$((${UTICKS[$target]:-0} + u1 - u0))
    fi
    FOREIGN+="$foreign "
    RPS[$target]+="$rps "
    P50[$target]+="$p50 "
    P99[$target]+="$p99 "
    REQS[$target]=$((${REQS[$target]:-0} + reqs))
    NON2XX[$target]=$((${NON2XX[$target]:-0} + n2))
    SOCKERR[$target]=$((${SOCKERR[$target]:-0} + se))
    if ((n2 > 0 || se > 0)); then
        warn "$target round $round: $n2 non-2xx/3xx responses, $se socket errors"
    fi
    return 0
}

# idle_check: percentage of all CPUs busy over one second, from /proc/stat.
# Other work on the machine (e.g. a cargo build) skews every number here.
background_busy_pct() {
    local a b
    a="$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
    sleep 1
    b="$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; idle = y[2] - x[2]
        if (busy + idle <= 0) print 0; else printf "%.0f\n", busy / (busy + idle) * 100 }'
}

# wait_idle: wait up to IDLE_WAIT seconds for the machine to be < 10% busy.
wait_idle() {
    local deadline busy
    ((IDLE_WAIT > 0)) || return 0
    deadline=$((SECONDS + IDLE_WAIT))
    while ((SECONDS < deadline)); do
        busy="$(background_busy_pct)"
        ((busy < 10)) && return 0
    done
    warn "machine still busy after waiting ${IDLE_WAIT}s; measuring anyway"
}

# ------------------------------------------------------------------- main --

if ((NCPU < 2)) || ! taskset -c "$PROXY_CPU" true 2>/dev/null; then
    die "needs CPUs $LOAD_CPU and $PROXY_CPU (nproc is $NCPU)"
fi
ensure_packages
NGINX_BIN="$(find_tool nginx)" || die "nginx not found"
HAPROXY_BIN="$(find_tool haproxy)" || die "haproxy not found"
build
start_upstream

declare -a ACTIVE=()
for t in $TARGETS; do
    case "$t" in
        direct) PORT[direct]="$UPSTREAM_PORT"; ACTIVE+=(direct) ;;
        warden | nginx | haproxy | warden_b)
            if start_proxy "$t"; then
                ACTIVE+=("$t")
                log "$t on 127.0.0.1:${PORT[$t]} (pid ${PID[$t]}, CPU $PROXY_CPU)"
            else
                warn "$t: ${STATUS[$t]}"
            fi
            ;;
    esac
done
((${#ACTIVE[@]} > 0)) || die "no target could be started"

START_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
BACKGROUND_BUSY="$(background_busy_pct)"
if ((BACKGROUND_BUSY > 10)); then
    warn "machine is not idle before the run (${BACKGROUND_BUSY}% of all CPUs busy); results will be noisy"
fi

if ((WARMUP > 0)); then
    for t in "${ACTIVE[@]}"; do
        log "warm-up $t (${WARMUP}s, not counted)"
        run_wrk "$t" "$WARMUP" "$WORK/wrk-$t-warmup.txt" || warn "warm-up wrk failed for $t"
    done
fi

DISCARDED=0
for ((round = 1; round <= ROUNDS; round++)); do
    for t in "${ACTIVE[@]}"; do
        [[ -n "${STATUS[$t]:-}" ]] && continue
        for ((attempt = 0; attempt <= RETRIES; attempt++)); do
            wait_idle
            rc=0
            measure_round "$t" "$round" "$((attempt == RETRIES))" || rc=$?
            if ((rc == 2)); then
                DISCARDED=$((DISCARDED + 1))
                warn "$t round $round: more than ${MAX_FOREIGN}% foreign CPU; discarded, retrying ($((attempt + 1))/$RETRIES)"
                continue
            fi
            break
        done
        if ((rc == 1)); then
            warn "$t: ${STATUS[$t]} — skipping its remaining rounds"
        fi
    done
done

for t in "${ACTIVE[@]}"; do
    if [[ "$t" != direct ]] && kill -0 "${PID[$t]}" 2>/dev/null; then
        HWM[$t]="$(vm_hwm_kb "${PID[$t]}")"
    fi
done

# ----------------------------------------------------------------- report --

tool_versions() {
    local nv hv wv
    nv="$("$NGINX_BIN" -v 2>&1 | head -n1 | sed 's/^nginx version: //')"
    hv="$("$HAPROXY_BIN" -v 2>/dev/null | head -n1 | awk '{ print "HAProxy " $3 }')"
    wv="$(wrk -v 2>&1 | head -n1 | awk '{ print $1 " " $2 }' || true)"
    printf '%s, %s, %s' "$nv" "$hv" "$wv"
}

warden_rev() {
    local rev
    if [[ -n "${WARDEN_LABEL:-}" ]]; then
        echo "$WARDEN_LABEL"
        return 0
    fi
    if [[ "$WARDEN_BIN" != "$REPO_ROOT/target/release/warden" ]]; then
        # A binary from elsewhere: the work tree says nothing about it.
        printf '%s (%s)\n' "$("$WARDEN_BIN" --version 2>/dev/null | head -n1 || echo '?')" "$WARDEN_BIN"
        return 0
    fi
    rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if ! git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null; then
        rev="$rev+dirty"
    fi
    echo "warden $rev"
}

fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "" || v == "nan") print "—"; else printf f, v }'; }

FOREIGN_MEDIAN="$(median <<<"$FOREIGN")"
FOREIGN_MAX="$(tr ' ' '\n' <<<"$FOREIGN" | awk 'NF' | sort -g | tail -n1)"
FOREIGN_MAX="${FOREIGN_MAX:-nan}"
if awk -v m="$FOREIGN_MAX" 'BEGIN { exit !(m != "nan" && m + 0 > 5) }'; then
    warn "up to ${FOREIGN_MAX}% of the machine's CPU went to work other than this benchmark during a round; results are noisy"
fi

REPORT="$WORK/report.md"
{
    cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "Date: $START_DATE · $(uname -srm) · CPU: ${cpu_model:-unknown} · nproc: $(nproc)"
    if [[ " $TARGETS " == *" warden "* ]]; then
        echo "Tools: $(tool_versions), $(warden_rev)"
    else
        echo "Tools: $(tool_versions)"
    fi
    echo "Parameters: CONNECTIONS=$CONNECTIONS DURATION=${DURATION}s ROUNDS=$ROUNDS WARMUP=${WARMUP}s;" \
        "wrk -t1 and upstream pinned to CPU $LOAD_CPU, proxy pinned to CPU $PROXY_CPU;" \
        "background CPU busy before run: ${BACKGROUND_BUSY}%;" \
        "foreign CPU during kept rounds: median $(fmt "$FOREIGN_MEDIAN" '%.1f')%, max ${FOREIGN_MAX}% of all CPUs" \
        "(${DISCARDED} rounds discarded${MAX_FOREIGN:+ above ${MAX_FOREIGN}%})"
    echo
    echo "| target | median req/s | ratio to direct | median p50 (µs) | median p99 (µs) | CPU µs/req | user / sys µs/req | proxy core busy | peak RSS MiB | non-2xx/3xx | socket errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    direct_rps=""
    if [[ -n "${RPS[direct]:-}" ]]; then
        direct_rps="$(median <<<"${RPS[direct]}")"
    fi
    declare -A CPU_PER_REQ=()
    for t in $TARGETS; do
        if [[ -z "${RPS[$t]:-}" ]]; then
            echo "| $t | ${STATUS[$t]:-no data} | — | — | — | — | — | — | — | — | — |"
            continue
        fi
        n_rounds="$(wc -w <<<"${RPS[$t]}")"
        rps="$(median <<<"${RPS[$t]}")"
        p50="$(median <<<"${P50[$t]}")"
        p99="$(median <<<"${P99[$t]}")"
        ratio="—"; cpu="—"; split="—"; busy="—"; rss="—"
        if [[ -n "$direct_rps" ]]; then
            ratio="$(awk -v a="$rps" -v b="$direct_rps" 'BEGIN { printf "%.2f", a / b }')"
        fi
        if [[ "$t" != direct ]]; then
            CPU_PER_REQ[$t]="$(awk -v k="${TICKS[$t]:-0}" -v hz="$CLK_TCK" -v n="${REQS[$t]}" \
                'BEGIN { if (n > 0) printf "%.2f", k / hz * 1e6 / n; else print "nan" }')"
            cpu="$(fmt "${CPU_PER_REQ[$t]}" '%.2f')"
            split="$(awk -v t="${TICKS[$t]:-0}" -v u="${UTICKS[$t]:-0}" -v hz="$CLK_TCK" -v n="${REQS[$t]}" \
                'BEGIN { if (n > 0) printf "%.2f / %.2f", u / hz * 1e6 / n, (t - u) / hz * 1e6 / n; else print "—" }')"
            busy="$(awk -v k="${TICKS[$t]:-0}" -v hz="$CLK_TCK" -v s="$((DURATION * n_rounds))" \
                'BEGIN { printf "%.0f%%", k / hz / s * 100 }')"
            rss="$(awk -v kb="${HWM[$t]:-}" 'BEGIN { if (kb == "") print "—"; else printf "%.1f", kb / 1024 }')"
        fi
        name="$t"
        [[ -n "${STATUS[$t]:-}" ]] && name="$t (${STATUS[$t]}; $n_rounds rounds)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$name" "$(fmt "$rps" '%.0f')" "$ratio" "$(fmt "$p50" '%.0f')" "$(fmt "$p99" '%.0f')" \
            "$cpu" "$split" "$busy" "$rss" "${NON2XX[$t]:-0}" "${SOCKERR[$t]:-0}"
    done
    echo
    if [[ -n "${CPU_PER_REQ[warden]:-}" && -n "${CPU_PER_REQ[nginx]:-}" ]]; then
        awk -v w="${CPU_PER_REQ[warden]}" -v n="${CPU_PER_REQ[nginx]}" 'BEGIN {
            if (w == "nan" || n == "nan" || n == 0) print "warden CPU/req vs nginx: n/a"
            else printf "warden CPU/req vs nginx: %.2f× (%.2f µs vs %.2f µs)\n", w / n, w, n }'
    else
        echo "warden CPU/req vs nginx: n/a (warden or nginx has no data)"
    fi
    if [[ -n "${CPU_PER_REQ[warden]:-}" && -n "${CPU_PER_REQ[warden_b]:-}" ]]; then
        echo "warden_b: $WARDEN_B_BIN"
        awk -v w="${CPU_PER_REQ[warden]}" -v b="${CPU_PER_REQ[warden_b]}" 'BEGIN {
            if (w == "nan" || b == "nan" || b == 0) print "warden CPU/req vs warden_b: n/a"
            else printf "warden CPU/req vs warden_b: %.3f× (%.2f µs vs %.2f µs)\n", w / b, w, b }'
    fi
} >"$REPORT"

cat "$REPORT"

fail=0
for t in $TARGETS; do
    if [[ -n "${STATUS[$t]:-}" ]]; then
        warn "$t: ${STATUS[$t]}"
        fail=1
    fi
    if ((${NON2XX[$t]:-0} > 0 || ${SOCKERR[$t]:-0} > 0)); then
        fail=1
        warn "$t: ${NON2XX[$t]:-0} non-2xx/3xx responses and ${SOCKERR[$t]:-0} socket errors over the measured rounds"
    fi
done
exit "$fail"
