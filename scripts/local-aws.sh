#!/usr/bin/env bash
# A local S3 + SQS on loopback for the fleet tests and for trying `spotmill submit/worker/
# aggregate` without an AWS account.
#
# Usage: scripts/local-aws.sh start [--watch-pid PID]   install if needed, start, print the env
#        scripts/local-aws.sh env                        print the env of the running emulator
#        scripts/local-aws.sh stop                       stop it
#        scripts/local-aws.sh install                    only install
#
# It installs ministack==1.5.33 (PyPI) into a venv under the cache dir, falling back to
# moto[server] if ministack cannot be installed, and starts it on 127.0.0.1 on a free port.
# State lives only in memory: use fresh bucket and queue names.
#
# `start` prints shell lines (`export AWS_ENDPOINT_URL=...` and dummy credentials) and writes
# them to "$STATE_DIR/env"; `eval "$(scripts/local-aws.sh start)"` sets them in a shell.
# With --watch-pid PID the emulator is stopped when process PID exits (the tests use this).
#
# Env: SPOTMILL_LOCAL_AWS_DIR  state dir (pid, port, env, log); default $CACHE/local-aws
#      SPOTMILL_AWS_VENV       venv dir; default ${XDG_CACHE_HOME:-~/.cache}/spotmill/aws-venv
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/spotmill"
venv="${SPOTMILL_AWS_VENV:-$cache/aws-venv}"
state="${SPOTMILL_LOCAL_AWS_DIR:-$cache/local-aws}"
MINISTACK_VERSION=1.5.33

log() { echo "local-aws: $*" >&2; }

install() {
    mkdir -p "$(dirname "$venv")"
    # One installer at a time (tests may start several emulators at once).
    exec 9>"$(dirname "$venv")/aws-venv.lock"
    flock 9
    if [[ -x "$venv/bin/ministack" || -x "$venv/bin/moto_server" ]]; then
        flock -u 9
        return
    fi
    command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        log "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
        exit 1
    fi
    log "installing ministack==$MINISTACK_VERSION into $venv"
    if ! "$venv/bin/pip" install -q "ministack==$MINISTACK_VERSION" >&2; then
        log "ministack did not install; falling back to moto[server]"
        "$venv/bin/pip" install -q "moto[server]" >&2
    fi
    flock -u 9
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

env_lines() {
    local port="$1"
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF
}

running() {
    [[ -f "$state/pid" ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

start() {
    local watch=""
    if [[ "${1:-}" == "--watch-pid" ]]; then
        watch="${2:?--watch-pid needs a pid}"
    fi
    mkdir -p "$state"
    if running; then
        cat "$state/env"
        return
    fi
    install
    local port kind
    port="$(free_port)"
    if [[ -x "$venv/bin/ministack" ]]; then
        kind=ministack
        GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 SERVICES=s3,sqs \
            setsid "$venv/bin/ministack" >"$state/log" 2>&1 </dev/null &
    else
        kind=moto
        setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/log" 2>&1 </dev/null &
    fi
    local pid=$!
    echo "$pid" >"$state/pid"
    echo "$port" >"$state/port"
    local health="http://127.0.0.1:$port/_ministack/health"
    [[ "$kind" == moto ]] && health="http://127.0.0.1:$port/moto-api/"
    local ok=""
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$health" 2>/dev/null; then
            ok=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$ok" ]]; then
        log "$kind did not become healthy on 127.0.0.1:$port; its log:"
        cat "$state/log" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$state/pid"
        exit 1
    fi
    env_lines "$port" >"$state/env"
    log "$kind listening on http://127.0.0.1:$port (pid $pid, env in $state/env)"
    if [[ -n "$watch" ]]; then
        # Stop the emulator when the watched process (a test binary) ends.
        (
            while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
            kill "$pid" 2>/dev/null || true
        ) >/dev/null 2>&1 </dev/null &
        disown
    fi
    cat "$state/env"
}

stop() {
    if running; then
        local pid
        pid="$(cat "$state/pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped (pid $pid)"
    fi
    rm -f "$state/pid" "$state/port" "$state/env"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    env)
        running || { log "not running; use: $0 start"; exit 1; }
        cat "$state/env"
        ;;
    install) install ;;
    *)
        echo "usage: $0 start [--watch-pid PID] | stop | env | install" >&2
        exit 2
        ;;
esac
