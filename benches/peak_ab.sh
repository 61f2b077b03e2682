#!/usr/bin/env bash
# benches/peak_ab.sh — peak RSS of two warden builds and nginx under the same burst,
# interleaved, on loopback.
#
# Each round runs `wrk -t2 -cCONNS -dWRK_SECS` against warden A, warden B and nginx, one
# after the other, and reads each process's VmHWM (reset with clear_refs before its burst).
# During each burst RssAnon and RssFile are sampled every 100 ms, so the table also says how
# much of the peak is heap and how much is the mapped binary and libraries. Interleaving
# matters: nginx's own peak moves by 10% from run to run, and a ratio taken across runs
# measures that as much as warden.
#
# Usage:
#   A=/path/to/warden B=/path/to/other/warden benches/peak_ab.sh
#
# Environment: A, B (warden binaries; B optional), ROUNDS (3), CONNS (2000), WRK_SECS (10),
#   UPSTREAM_BIN (benches/upstream/target/release/warden-bench-upstream, built by
#   benches/abuse.sh or `cargo build --release` in benches/upstream).
# Requires: wrk, nginx (apt-get install -y wrk nginx-light).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
A="${A:-$ROOT/target/release/warden}"
B="${B:-}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-2000}"
WRK_SECS="${WRK_SECS:-10}"
UPSTREAM_BIN="${UPSTREAM_BIN:-$ROOT/benches/upstream/target/release/warden-bench-upstream}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
# shellcheck source=benches/memory_lib.sh
source "$ROOT/benches/memory_lib.sh"
memory_init peak_ab
[[ -x "$A" && -x "$UPSTREAM_BIN" && -x "$NGINX" ]] || die "needs $A, $UPSTREAM_BIN and nginx"
command -v wrk >/dev/null || die "needs wrk"
ulimit -n "$(ulimit -Hn)"
HARD="$(ulimit -Hn)"
(( HARD > CONNS + 500 )) || die "the hard descriptor limit ($HARD) is too low for $CONNS connections"

"$UPSTREAM_BIN" 0 >"$WORK/upstream.addr" &
PIDS+=("$!")
for _ in $(seq 50); do [[ -s "$WORK/upstream.addr" ]] && break; sleep 0.1; done
UPSTREAM="$(head -n1 "$WORK/upstream.addr")"

declare -A PORT PID
start_warden() { # $1 label, $2 binary
    local port admin
    port="$(free_port)"; admin="$(free_port)"
    cat >"$WORK/$1.yaml" <<EOF
version: 1
admin: { listen: 127.0.0.1:$admin }
limits: { max_connections: $(( HARD - 200 < 10000 ? HARD - 200 : 10000 )) }
connections:
  - name: bench
    api: { listen: 127.0.0.1:$port, upstream: http://$UPSTREAM }
EOF
    RUST_LOG=warn "$2" run --config "$WORK/$1.yaml" 2>"$WORK/$1.log" &
    PID[$1]=$!; PIDS+=("$!"); PORT[$1]=$port
    wait_port "$port" || { cat "$WORK/$1.log" >&2; die "warden $1 did not start"; }
}
TARGETS=(A)
start_warden A "$A"
if [[ -n "$B" ]]; then TARGETS+=(B); start_warden B "$B"; fi

PORT[nginx]="$(free_port)"
nginx_conf "$WORK/nginx" "$HARD" "$UPSTREAM" "${PORT[nginx]}"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr" &
PID[nginx]=$!; PIDS+=("$!")
wait_port "${PORT[nginx]}" || { cat "$WORK/nginx/stderr" >&2; die "nginx did not start"; }
TARGETS+=(nginx)
sleep 1

# Samples RssAnon and RssFile of $1 every 100 ms until $2 exists (bounded by WRK_SECS + 5 s);
# prints "anon_kib file_kib" at the sample with the most anonymous memory.
sample() {
    local n=$(( (WRK_SECS + 5) * 10 )) best=0 file=0 a f
    for ((i = 0; i < n; i++)); do
        [[ -e $2 ]] && break
        read -r a f < <(awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a+0, f+0}' "/proc/$1/status")
        if (( a > best )); then best=$a; file=$f; fi
        sleep 0.1
    done
    echo "$best $file"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

log "$ROUNDS rounds of wrk -c$CONNS -d${WRK_SECS}s against ${TARGETS[*]}"
echo "| round | target | peak RSS MB | anon / file at the peak MB | req/s |"
echo "|---:|---|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        pid=${PID[$t]}
        echo 5 >"/proc/$pid/clear_refs"
        rm -f "$WORK/done"
        sample "$pid" "$WORK/done" >"$WORK/sample" &
        sampler=$!
        rps=$(wrk -t2 -c"$CONNS" -d"${WRK_SECS}s" "http://127.0.0.1:${PORT[$t]}/" 2>&1 \
            | awk '/Requests\/sec/ {printf "%.0f", $2}')
        touch "$WORK/done"
        wait "$sampler"
        read -r anon file <"$WORK/sample"
        hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
        echo "| $r | $t | $(mb "$hwm") | $(mb "$anon") / $(mb "$file") | ${rps:-?} |"
        sleep 2
    done
done
