# benches/memory_lib.sh — what benches/abuse.sh and benches/peak_ab.sh share (sourced, not
# run): a scratch directory and the processes to end on exit, free loopback ports, a bounded
# wait for a listener, and the nginx they compare with.

# memory_init NAME: sets WORK (a scratch directory, removed on exit) and PIDS (processes
# killed on exit); log and die lines start with NAME.
memory_init() {
    BENCH_NAME=$1
    WORK="$(mktemp -d)"
    PIDS=()
    trap memory_cleanup EXIT
}
log() { echo "$BENCH_NAME: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck disable=SC2317  # invoked via trap
memory_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # bounded: 100 × 0.1 s
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# nginx_conf DIR HARD UPSTREAM PORT [H2_PORT]: writes DIR/nginx.conf, one worker without a
# master (so one process holds all its memory), descriptors up to the hard limit, keep-alive
# to UPSTREAM like warden's pool, and an h2c listener on H2_PORT when given.
nginx_conf() {
    local dir=$1 hard=$2 upstream=$3 port=$4 h2=${5:-} h2_server=""
    mkdir -p "$dir"
    if [[ -n $h2 ]]; then
        h2_server="server {
        listen 127.0.0.1:$h2 http2;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"
    fi
    cat >"$dir/nginx.conf" <<EOT
worker_processes 1;
master_process off;
daemon off;
worker_rlimit_nofile $hard;
pid $dir/nginx.pid;
error_log $dir/error.log crit;
events { worker_connections $(( hard - 100 )); }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    upstream up { server $upstream; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    $h2_server
}
EOT
}
