# benches/lib.sh — helpers shared by benches/fixed_rate.sh, benches/h2.sh and
# benches/sse_ttfb.sh (sourced, not run).  They follow benches/compare.sh's
# conventions: loopback only, the proxy under test alone on CPU 1 with one
# worker, the load generator and the bench upstream on CPU 0, every wait
# bounded, every process started here killed on exit.
#
# The sourcing script sets BENCH (its name, for log lines) and calls
# bench_init before anything else.  Environment read here:
#   SKIP_BUILD=1   do not build the bench upstream; use the existing binary
#   UPSTREAM_BIN   bench upstream binary
#                  (default benches/upstream/target/release/warden-bench-upstream)
#   WARDEN_BIN     warden binary (default target/release/warden; never built
#                  here: build it with `cargo build --release --bin warden`)
#   WARDEN_ARGS    extra arguments for `warden run`
#   OUT_DIR        if set, keep raw outputs, configs and logs there
#   BUILD_TIMEOUT  seconds allowed for the upstream's cargo build (default 1800)

LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LIB_DIR/.." && pwd)"
UPSTREAM_DIR="$LIB_DIR/upstream"
UPSTREAM_BIN="${UPSTREAM_BIN:-$UPSTREAM_DIR/target/release/warden-bench-upstream}"
WARDEN_BIN="${WARDEN_BIN:-$REPO_ROOT/target/release/warden}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-1800}"
OUT_DIR="${OUT_DIR:-}"

PROXY_CPU=1
LOAD_CPU=0

log() { printf '[%s] %s\n' "$BENCH" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$BENCH" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH" "$*" >&2; exit 1; }

declare -a STARTED_PIDS=()
declare -A PORT=() PID=() STATUS=()
WORK=""

# shellcheck disable=SC2317  # invoked via trap
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid i
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
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
    [[ -n "$WORK" ]] && rm -rf "$WORK"
    exit "$rc"
}

bench_init() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-$BENCH.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if (($(nproc) < 2)) || ! taskset -c "$PROXY_CPU" true 2>/dev/null; then
        die "needs CPUs $LOAD_CPU and $PROXY_CPU (nproc is $(nproc))"
    fi
    local tool
    for tool in taskset curl getconf python3; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
    done
}

# check_uint NAME...: each named variable is a non-negative integer.
check_uint() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$BENCH: $v must be a non-negative integer (got '${!v}')" >&2; exit 2; }
    done
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

# apt_install PACKAGE...: installs with apt-get (as root or with sudo).
apt_install() {
    log "installing $* with apt-get"
    as_root timeout 600 apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y "$@"
}

# find_tool NAME: nginx and haproxy live in /usr/sbin, not always on PATH.
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
# the ports already handed out are remembered).
declare -a TAKEN_PORTS=()
FREE_PORT=""
free_port() {
    local p i
    for ((i = 0; i < 50; i++)); do
        p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
        if [[ " ${TAKEN_PORTS[*]} " != *" $p "* ]]; then
            TAKEN_PORTS+=("$p")
            FREE_PORT="$p"
            return 0
        fi
    done
    die "could not find a free port"
}

build_upstream() {
    if [[ "$SKIP_BUILD" == 1 ]]; then
        log "SKIP_BUILD=1: using the existing bench upstream"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo is required (or SKIP_BUILD=1)"
        log "building bench upstream (release)"
        timeout "$BUILD_TIMEOUT" cargo build --release --quiet \
            --manifest-path "$UPSTREAM_DIR/Cargo.toml" \
            --target-dir "$UPSTREAM_DIR/target" ||
            die "bench upstream build failed"
    fi
    [[ -x "$UPSTREAM_BIN" ]] || die "bench upstream binary missing: $UPSTREAM_BIN"
}

# wait_http NAME PID URL [CURL_ARGS...]: up to 10 s for a 200 from URL.
wait_http() {
    local name="$1" pid="$2" url="$3" i code=""
    shift 3
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            warn "$name (pid $pid) exited during startup"
            return 1
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url" 2>/dev/null || true)"
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    warn "$name did not answer 200 on $url within 10 s (last status: ${code:-none})"
    return 1
}

# start_upstream NAME [UPSTREAM_ARGS...]: the bench upstream on CPU 0; sets
# PORT[NAME] and PID[NAME].  With --tls the health check goes over https.
start_upstream() {
    local name="$1" out="$WORK/$1.out" i addr="" scheme=http
    shift
    local -a curl_args=()
    if [[ " $* " == *" --tls "* ]]; then
        scheme=https
        curl_args=(-k)
    elif [[ " $* " == *" --h2c "* ]]; then
        curl_args=(--http1.1)
    fi
    taskset -c "$LOAD_CPU" "$UPSTREAM_BIN" 0 "$@" >"$out" 2>"$WORK/$name.err" &
    STARTED_PIDS+=("$!")
    PID[$name]=$!
    for ((i = 0; i < 100; i++)); do
        addr="$(head -n1 "$out" 2>/dev/null || true)"
        [[ -n "$addr" ]] && break
        kill -0 "${PID[$name]}" 2>/dev/null || die "bench upstream $name exited: $(cat "$WORK/$name.err")"
        sleep 0.1
    done
    [[ "$addr" =~ ^127\.0\.0\.1:([0-9]+)$ ]] || die "bench upstream $name printed no address (got '$addr')"
    PORT[$name]="${BASH_REMATCH[1]}"
    TAKEN_PORTS+=("${PORT[$name]}")
    wait_http "$name" "${PID[$name]}" "$scheme://127.0.0.1:${PORT[$name]}/" "${curl_args[@]}" ||
        die "bench upstream $name not serving"
    log "upstream $name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]}, CPU $LOAD_CPU${*:+, $*})"
}

# start_warden NAME UPSTREAM_URL: zero-config warden (role mcp unless
#   WARDEN_ARGS says otherwise) on CPU 1.
# start_warden NAME --config FILE PORT: warden with a proxy.yaml whose route
#   listens on 127.0.0.1:PORT.
start_warden() {
    local name="$1" port admin
    if [[ ! -x "$WARDEN_BIN" ]]; then
        STATUS[$name]="unavailable (no binary at $WARDEN_BIN)"
        return 1
    fi
    local -a args=()
    if [[ "$2" == --config ]]; then
        args=(--config "$3")
        port="$4"
    else
        free_port; port="$FREE_PORT"
        free_port; admin="$FREE_PORT"
        args=(--listen "127.0.0.1:$port" --upstream "$2" --admin "127.0.0.1:$admin")
    fi
    local -a extra=()
    read -r -a extra <<<"${WARDEN_ARGS:-}"
    RUST_LOG=warn taskset -c "$PROXY_CPU" "$WARDEN_BIN" run "${args[@]}" \
        --log-format json "${extra[@]}" >"$WORK/$name.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[$name]=$!
    PORT[$name]="$port"
    if ! wait_http "$name" "${PID[$name]}" "http://127.0.0.1:$port/"; then
        STATUS[$name]="unavailable (did not start)"
        tail -n 20 "$WORK/$name.log" >&2 || true
        return 1
    fi
}

# start_nginx NAME UPSTREAM_PORT LISTEN_PARAMS LOCATION_EXTRA [CURL_ARGS...]:
# nginx with one worker on CPU 1, proxying to 127.0.0.1:UPSTREAM_PORT over
# HTTP/1.1 keep-alive (as compare.sh configures it; NGINX_KEEPALIVE idle
# upstream connections kept, default 64).  LISTEN_PARAMS go on the
# listen line (e.g. "http2"), LOCATION_EXTRA into the location block (e.g.
# "proxy_buffering off;").  CURL_ARGS are for the health check.
start_nginx() {
    local name="$1" up="$2" listen_params="$3" location_extra="$4" port dir="$WORK/$1"
    shift 4
    local bin
    bin="$(find_tool nginx)" || { STATUS[$name]="unavailable (nginx not installed)"; return 1; }
    free_port; port="$FREE_PORT"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# Generated by benches/$BENCH
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
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream bench_upstream {
        server 127.0.0.1:$up;
        keepalive ${NGINX_KEEPALIVE:-64};
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port $listen_params;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $location_extra
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" "$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stdout.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[$name]=$!
    PORT[$name]="$port"
    if ! wait_http "$name" "${PID[$name]}" "http://127.0.0.1:$port/" "$@"; then
        STATUS[$name]="unavailable (did not start)"
        cat "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
        return 1
    fi
}

# start_haproxy NAME UPSTREAM_PORT BIND_PARAMS DEFAULTS_EXTRA [CURL_ARGS...]:
# haproxy with one thread on CPU 1 (compare.sh's config); BIND_PARAMS go on
# the bind line (e.g. "proto h2"), DEFAULTS_EXTRA is one more line of the
# defaults section (e.g. "option http-no-delay").
start_haproxy() {
    local name="$1" up="$2" bind_params="$3" defaults_extra="$4" port dir="$WORK/$1" bin
    shift 4
    bin="$(find_tool haproxy)" || { STATUS[$name]="unavailable (haproxy not installed)"; return 1; }
    free_port; port="$FREE_PORT"
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
# Generated by benches/$BENCH (no log directives: logging off)
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
    $defaults_extra

frontend bench_fe
    bind 127.0.0.1:$port $bind_params
    default_backend bench_be

backend bench_be
    server up1 127.0.0.1:$up
EOF
    if ! timeout 10 "$bin" -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1; then
        STATUS[$name]="unavailable (haproxy rejected its config)"
        cat "$dir/check.log" >&2
        return 1
    fi
    taskset -c "$PROXY_CPU" "$bin" -db -f "$dir/haproxy.cfg" >"$dir/stdout.log" 2>&1 &
    STARTED_PIDS+=("$!")
    PID[$name]=$!
    PORT[$name]="$port"
    if ! wait_http "$name" "${PID[$name]}" "http://127.0.0.1:$port/" "$@"; then
        STATUS[$name]="unavailable (did not start)"
        cat "$dir/stdout.log" >&2 || true
        return 1
    fi
}

CLK_TCK="$(getconf CLK_TCK)"

# proc_ticks PID: "utime stime" (all threads) in clock ticks.  The comm field
# may hold spaces or parentheses, so split after the last ')'.
proc_ticks() {
    local stat rest
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    # rest starts at field 3 (state); utime/stime are fields 14/15 → 12th/13th here.
    awk '{ print $12, $13 }' <<<"$rest"
}

# us_per_req USER_TICKS SYS_TICKS REQUESTS → "total user sys" µs per request.
us_per_req() {
    awk -v u="$1" -v s="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {
        if (n <= 0) { print "nan nan nan"; exit }
        printf "%.2f %.2f %.2f\n", (u + s) / hz * 1e6 / n, u / hz * 1e6 / n, s / hz * 1e6 / n }'
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan"; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "" || v == "nan") print "—"; else printf f, v }'; }

vm_hwm_kb() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# background_busy_pct: percentage of all CPUs busy over one second.
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

# header_lines: the date/machine line and the busy warning for a report.
BACKGROUND_BUSY=""
measure_background() {
    BACKGROUND_BUSY="$(background_busy_pct)"
    if ((BACKGROUND_BUSY > 10)); then
        warn "machine is not idle before the run (${BACKGROUND_BUSY}% of all CPUs busy); results will be noisy"
    fi
}

machine_line() {
    local cpu_model
    cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC') · $(uname -srm) · CPU: ${cpu_model:-unknown} · nproc: $(nproc) · background CPU busy before run: ${BACKGROUND_BUSY:-?}%"
}

warden_rev() {
    local rev
    if [[ "$WARDEN_BIN" != "$REPO_ROOT/target/release/warden" ]]; then
        printf '%s (%s)\n' "$("$WARDEN_BIN" --version 2>/dev/null | head -n1 || echo '?')" "$WARDEN_BIN"
        return 0
    fi
    rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
    echo "warden $rev"
}

proxy_versions() {
    local nv="" hv=""
    if find_tool nginx >/dev/null; then
        nv="$("$(find_tool nginx)" -v 2>&1 | head -n1 | sed 's/^nginx version: //')"
    fi
    if find_tool haproxy >/dev/null; then
        hv="$("$(find_tool haproxy)" -v 2>/dev/null | head -n1 | awk '{ print "HAProxy " $3 }')"
    fi
    printf '%s' "$(warden_rev)${nv:+, $nv}${hv:+, $hv}"
}

# The arguments every script takes: --quick (sets QUICK=1), -h/--help (prints the script's
# header comment); anything else exits 2 naming the script ($BENCH).
parse_args() {
    QUICK=0
    local arg
    for arg in "$@"; do
        case "$arg" in
            --quick) QUICK=1 ;;
            -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) echo "$BENCH: unknown argument: $arg" >&2; exit 2 ;;
        esac
    done
}
