#!/usr/bin/env bash
# prometheus.sh - a real Prometheus (Debian's `prometheus`, installed if missing) for a test:
# on 127.0.0.1, its storage in the test's directory, stopped by the PID it was started with.
#
#   prometheus.sh start DIR PORT JOB=HOST:PORT...   scrape each target every second; returns
#                                                   once /-/ready answers (at most 60 s);
#                                                   it is stopped too if the caller dies
#   prometheus.sh stop DIR                          SIGTERM the PID in DIR/prometheus.pid,
#                                                   SIGKILL after 10 s
# Exit status 0, or 1 with the reason on stderr (and the end of DIR/prometheus.log).
set -uo pipefail
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
READY_S=60
STOP_S=10

die() { echo "prometheus.sh: $*" >&2; exit 1; }

start() {
    local dir=$1 port=$2 i job target
    shift 2
    [ -d "$dir" ] || die "no directory $dir"
    if ! command -v prometheus >/dev/null || ! command -v curl >/dev/null; then
        # shellcheck source=../scripts/lib/deps.sh
        . "$SRC/scripts/lib/deps.sh"
        cpn_install_pkgs prometheus curl || die "cannot install the Debian packages prometheus, curl"
    fi
    {
        echo "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}"
        echo "scrape_configs:"
        for target in "$@"; do
            job=${target%%=*}
            echo "  - job_name: $job"
            echo "    static_configs: [{targets: ['${target#*=}']}]"
        done
    } >"$dir/prometheus.yml"
    mkdir -p "$dir/prometheus-data"
    prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prometheus-data" \
        --web.listen-address="127.0.0.1:$port" --log.level=warn \
        >"$dir/prometheus.log" 2>&1 &
    local pid=$! owner=$PPID
    echo "$pid" >"$dir/prometheus.pid"
    # Should the test that started it die without calling stop, Prometheus goes too.
    (while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
     kill -TERM "$pid" 2>/dev/null) </dev/null >/dev/null 2>&1 &
    for ((i = 0; i < READY_S * 10; i++)); do
        if curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$dir/prometheus.log" >&2
    stop "$dir"
    die "Prometheus did not become ready on 127.0.0.1:$port"
}

stop() {
    local dir=$1 pid i
    [ -f "$dir/prometheus.pid" ] || return 0
    pid=$(cat "$dir/prometheus.pid")
    rm -f "$dir/prometheus.pid"
    # only the process we started, and only while it is still prometheus
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = prometheus ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < STOP_S * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

case "${1:-}" in
start) [ $# -ge 4 ] || die "usage: start DIR PORT JOB=HOST:PORT..."; shift; start "$@" ;;
stop) [ $# -eq 2 ] || die "usage: stop DIR"; stop "$2" ;;
*) die "usage: prometheus.sh start DIR PORT JOB=HOST:PORT... | stop DIR" ;;
esac
