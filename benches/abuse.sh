#!/usr/bin/env bash
# benches/abuse.sh — hostile-client probes of warden beside nginx, on loopback.
#
# Reproduces the probes behind "bounded under abuse": silent TCP connections,
# HTTP/2 connections that stop after their preface, a 1 byte/s slowloris head
# (warden's admin listener; nginx's only listener), the descriptor limit in
# effect, the time to open 5,000 connections, and memory: peak RSS under wrk at
# 512 and 2,000 connections, RSS 60 s after the burst, and RSS per idle
# connection. Prints a markdown table (warden | nginx) on stdout.
#
# Usage:
#   benches/abuse.sh                 # everything (about 5 minutes)
#   SKIP_BUILD=1 benches/abuse.sh    # use the existing release binaries
#
# Environment (every loop below is bounded by these counts and seconds):
#   HOLD_COUNT   connections per hold probe (default 100)
#   HOLD_SECS    how long hold probes watch their connections (default 75)
#   SLOW_COUNT   slowloris connections (default 200)
#   BURST_COUNT  connections opened for the connect-time probe (default 5000)
#   IDLE_COUNT   idle connections for the RSS-per-connection probe (default 10000;
#                both this script and the proxies need that many descriptors)
#   WRK_SECS     seconds per wrk burst (default 10)
#   AFTER_SECS   seconds to wait after the burst before reading RSS (default 60)
#   IDLE_SETTLE  seconds between the served connections' last answer and reading RSS
#                (default 15: past jemalloc's 10 s decay of freed pages)
#   WARDEN_BIN   default target/release/warden
#   WARDEN_LABEL how to name the warden build in the table (default: git HEAD)
#   WARDEN_LIMITS the config's limits line (default sets max_connections so that
#                IDLE_COUNT fits the hard fd limit); WARDEN_LIMITS= for a build
#                that predates limits.max_connections
#   PROBES       subset of "holds connect memory idle" (default all); rows of
#                probes not run say "-"
#   OUT          also write the table to this file
#
# Requires: python3, wrk, nginx (apt-get install -y wrk nginx-light, done here
# when missing and running as root), taskset is not needed.
set -euo pipefail

HOLD_COUNT="${HOLD_COUNT:-100}"
HOLD_SECS="${HOLD_SECS:-75}"
SLOW_COUNT="${SLOW_COUNT:-200}"
BURST_COUNT="${BURST_COUNT:-5000}"
IDLE_COUNT="${IDLE_COUNT:-10000}"
WRK_SECS="${WRK_SECS:-10}"
AFTER_SECS="${AFTER_SECS:-60}"
IDLE_SETTLE="${IDLE_SETTLE:-15}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROBE="$ROOT/benches/abuse_probe.py"
WARDEN_BIN="${WARDEN_BIN:-$ROOT/target/release/warden}"
UPSTREAM_BIN="$ROOT/benches/upstream/target/release/warden-bench-upstream"
# shellcheck source=benches/memory_lib.sh
source "$ROOT/benches/memory_lib.sh"
memory_init abuse

find_tool() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"
    elif [[ -x "/usr/sbin/$1" ]]; then echo "/usr/sbin/$1"
    else return 1; fi
}
if ! find_tool nginx >/dev/null || ! find_tool wrk >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "needs wrk and nginx"
    log "installing wrk nginx-light"
    apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
NGINX="$(find_tool nginx)"
WRK="$(find_tool wrk)"

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --locked -p warden) >&2
    (cd "$ROOT/benches/upstream" && cargo build --release --locked) >&2
fi
[[ -x "$WARDEN_BIN" && -x "$UPSTREAM_BIN" ]] || die "release binaries missing"

# Descriptors for this shell's children (the probes and wrk).
ulimit -n "$(ulimit -Hn)"
HARD="$(ulimit -Hn)"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
nofile() { awk '/^Max open files/ {print $4}' "/proc/$1/limits"; }
mib() { [[ $1 == - ]] && { echo -; return; }; awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# --- targets ---------------------------------------------------------------
"$UPSTREAM_BIN" 0 >"$WORK/upstream.addr" &
PIDS+=("$!")
for _ in $(seq 50); do [[ -s "$WORK/upstream.addr" ]] && break; sleep 0.1; done
UPSTREAM="$(head -n1 "$WORK/upstream.addr")"
UPSTREAM_PORT="${UPSTREAM##*:}"

W_PORT="$(free_port)"; W_ADMIN="$(free_port)"
# max_connections: the most the hard descriptor limit here allows, so the idle
# probe is bounded by IDLE_COUNT and not by warden's default.
W_MAX=$(( HARD - 200 < 10000 ? HARD - 200 : 10000 ))
(( IDLE_COUNT + HOLD_COUNT < W_MAX )) || W_MAX=$(( HARD - 200 ))
cat >"$WORK/warden.yaml" <<EOF
version: 1
admin: { listen: 127.0.0.1:$W_ADMIN }
${WARDEN_LIMITS-limits: { max_connections: $W_MAX \}}
connections:
  - name: bench
    api: { listen: 127.0.0.1:$W_PORT, upstream: http://$UPSTREAM }
EOF
RUST_LOG=warn "$WARDEN_BIN" run --config "$WORK/warden.yaml" 2>"$WORK/warden.log" &
W_PID=$!; PIDS+=("$W_PID")
wait_port "$W_PORT" || { cat "$WORK/warden.log" >&2; die "warden did not start"; }

N_PORT="$(free_port)"; N_H2="$(free_port)"
nginx_conf "$WORK/nginx" "$HARD" "$UPSTREAM" "$N_PORT" "$N_H2"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr" &
N_PID=$!; PIDS+=("$N_PID")
wait_port "$N_PORT" || { cat "$WORK/nginx/stderr" >&2; die "nginx did not start"; }
sleep 1
declare -A W N
W[rss0]=$(rss_kib "$W_PID"); N[rss0]=$(rss_kib "$N_PID")
W[nofile]=$(nofile "$W_PID"); N[nofile]=$(nofile "$N_PID")

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

PROBES="${PROBES:-holds connect memory idle}"
want() { [[ " $PROBES " == *" $1 "* ]]; }
for k in pre burst hwm512 hwm2000 after fdpeak fdafter idle_rss idle_per idle_fds kidle_rss kidle_per kidle_fds; do
    W[$k]=-; N[$k]=-
done
echo '{"closed": "-", "opened": "-", "last_close_s": "-"}' | tee "$WORK/w.silent" "$WORK/n.silent" "$WORK/w.h2" "$WORK/n.h2" "$WORK/w.slow" >"$WORK/n.slow"

# --- 1. silent, h2-preface and slowloris connections (all at once) ----------
if want holds; then
log "holding $HOLD_COUNT silent / h2 / $SLOW_COUNT slowloris connections for ${HOLD_SECS}s"
python3 "$PROBE" hold "127.0.0.1:$W_PORT" "$HOLD_COUNT" silent "$HOLD_SECS" >"$WORK/w.silent" &
python3 "$PROBE" hold "127.0.0.1:$N_PORT" "$HOLD_COUNT" silent "$HOLD_SECS" >"$WORK/n.silent" &
python3 "$PROBE" hold "127.0.0.1:$W_PORT" "$HOLD_COUNT" h2 "$HOLD_SECS" >"$WORK/w.h2" &
python3 "$PROBE" hold "127.0.0.1:$N_H2" "$HOLD_COUNT" h2 "$HOLD_SECS" >"$WORK/n.h2" &
python3 "$PROBE" hold "127.0.0.1:$W_ADMIN" "$SLOW_COUNT" slowloris "$HOLD_SECS" >"$WORK/w.slow" &
python3 "$PROBE" hold "127.0.0.1:$N_PORT" "$SLOW_COUNT" slowloris "$HOLD_SECS" >"$WORK/n.slow" &
wait_probes() { for j in $(jobs -p); do case " ${PIDS[*]} " in *" $j "*) ;; *) wait "$j";; esac; done; }
wait_probes
fi
held() { local r; r="$(cat "$1")"; echo "$(field "$r" closed)/$(field "$r" opened) closed (last at $(field "$r" last_close_s) s)"; }

# --- 2. connect time --------------------------------------------------------
if want connect; then
log "opening $BURST_COUNT connections"
W[burst]=$(field "$(python3 "$PROBE" hold "127.0.0.1:$W_PORT" "$BURST_COUNT" silent 1)" connect_s)
N[burst]=$(field "$(python3 "$PROBE" hold "127.0.0.1:$N_PORT" "$BURST_COUNT" silent 1)" connect_s)
sleep 2
fi

# --- 3. idle connections (before any burst, so the heap is fresh) ---------
idle_probe() { # $1 port, $2 pid, $3 mode (silent|served) -> "rss_kib bytes_per_conn count"
    local before after n ready="$WORK/ready.$1"
    before=$(rss_kib "$2")
    if [[ $3 == silent ]]; then
        python3 "$PROBE" hold "127.0.0.1:$1" "$IDLE_COUNT" silent 30 >"$WORK/idle.$1" &
        local p=$!
        # bounded: the hold probe opens them and watches for 30 s; read RSS at 20 s.
        sleep 20
        after=$(rss_kib "$2"); n=$(fds "$2")
        wait "$p" || true
    else
        python3 "$PROBE" idle "127.0.0.1:$1" "$IDLE_COUNT" 120 "$ready" >"$WORK/idle.$1" &
        local p=$!
        for _ in $(seq 1200); do [[ -s "$ready" ]] && break; sleep 0.1; done
        # After the allocator's decay time (jemalloc: 10 s), so memory freed once the
        # requests were answered is not counted as held by the waiting connections.
        sleep "$IDLE_SETTLE"
        after=$(rss_kib "$2"); n=$(fds "$2")
        rm -f "$ready"; wait "$p" || true
    fi
    echo "$after $(( (after - before) * 1024 / IDLE_COUNT )) $n"
}
if want idle; then
log "holding $IDLE_COUNT silent connections"
read -r W[idle_rss] W[idle_per] W[idle_fds] <<<"$(idle_probe "$W_PORT" "$W_PID" silent)"
read -r N[idle_rss] N[idle_per] N[idle_fds] <<<"$(idle_probe "$N_PORT" "$N_PID" silent)"
sleep 5
log "holding $IDLE_COUNT served keep-alive connections"
read -r W[kidle_rss] W[kidle_per] W[kidle_fds] <<<"$(idle_probe "$W_PORT" "$W_PID" served)"
read -r N[kidle_rss] N[kidle_per] N[kidle_fds] <<<"$(idle_probe "$N_PORT" "$N_PID" served)"
fi

# --- 4. memory under load, and after ----------------------------------------
burst() { # $1 port, $2 connections
    "$WRK" -t2 -c"$2" -d"${WRK_SECS}s" "http://127.0.0.1:$1/" >"$WORK/wrk.$1.$2" 2>&1 || true
}
if want memory; then
sleep 5
W[pre]=$(rss_kib "$W_PID"); N[pre]=$(rss_kib "$N_PID")
log "wrk -c512 and -c2000, ${WRK_SECS}s each"
# VmHWM is reset before each burst (clear_refs 5), so each peak is that burst's own.
peak_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || log "cannot reset VmHWM of $1: peaks include earlier probes"; }
peak_reset "$W_PID"; burst "$W_PORT" 512; W[hwm512]=$(hwm_kib "$W_PID")
peak_reset "$N_PID"; burst "$N_PORT" 512; N[hwm512]=$(hwm_kib "$N_PID")
peak_reset "$W_PID"; burst "$W_PORT" 2000; W[hwm2000]=$(hwm_kib "$W_PID")
peak_reset "$N_PID"; burst "$N_PORT" 2000; N[hwm2000]=$(hwm_kib "$N_PID")
W[fdpeak]=$(fds "$W_PID"); N[fdpeak]=$(fds "$N_PID")
log "waiting ${AFTER_SECS}s after the burst"
sleep "$AFTER_SECS"
W[after]=$(rss_kib "$W_PID"); N[after]=$(rss_kib "$N_PID")
W[fdafter]=$(fds "$W_PID"); N[fdafter]=$(fds "$N_PID")
fi

# --- table ------------------------------------------------------------------
{
echo
echo "warden ${WARDEN_LABEL:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')} | $("$NGINX" -v 2>&1 | head -n1) | hard fd limit $HARD"
echo
echo "| probe | warden | nginx |"
echo "|---|---|---|"
echo "| $HOLD_COUNT silent TCP connections, watched ${HOLD_SECS} s | $(held "$WORK/w.silent") | $(held "$WORK/n.silent") |"
echo "| $HOLD_COUNT HTTP/2 connections silent after the preface | $(held "$WORK/w.h2") | $(held "$WORK/n.h2") |"
echo "| $SLOW_COUNT slowloris heads at 1 byte/s (warden: admin port) | $(held "$WORK/w.slow") | $(held "$WORK/n.slow") |"
echo "| descriptor limit in effect (soft) | ${W[nofile]} | ${N[nofile]} |"
echo "| open $BURST_COUNT connections | ${W[burst]} s | ${N[burst]} s |"
echo "| RSS at start | $(mib "${W[rss0]}") | $(mib "${N[rss0]}") |"
echo "| peak RSS, wrk -c512 | $(mib "${W[hwm512]}") | $(mib "${N[hwm512]}") |"
echo "| peak RSS, wrk -c2000 | $(mib "${W[hwm2000]}") | $(mib "${N[hwm2000]}") |"
echo "| RSS before the burst | $(mib "${W[pre]}") | $(mib "${N[pre]}") |"
echo "| RSS ${AFTER_SECS} s after the burst | $(mib "${W[after]}") | $(mib "${N[after]}") |"
echo "| fds right after the burst / ${AFTER_SECS} s later | ${W[fdpeak]} / ${W[fdafter]} | ${N[fdpeak]} / ${N[fdafter]} |"
echo "| RSS with $IDLE_COUNT silent connections | $(mib "${W[idle_rss]}") (${W[idle_per]} B each) | $(mib "${N[idle_rss]}") (${N[idle_per]} B each) |"
echo "| RSS with $IDLE_COUNT served keep-alive connections | $(mib "${W[kidle_rss]}") (${W[kidle_per]} B each) | $(mib "${N[kidle_rss]}") (${N[kidle_per]} B each) |"
} | tee "${OUT:-/dev/null}"
