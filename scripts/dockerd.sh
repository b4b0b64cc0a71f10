#!/usr/bin/env bash
# Starts or stops the Docker daemon this project set up (used by setup.sh and by the
# test that stops Docker under load). With systemd: the docker service (and its socket,
# so nothing restarts it behind our back); without: dockerd in the background, logging
# to $DOCKERD_LOG, its pid in /var/run/docker.pid.
#
#   scripts/dockerd.sh start   start it and wait until it answers (60 s at most)
#   scripts/dockerd.sh stop    stop it and wait until it has exited (60 s at most)
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/agent-workspaces-dockerd.log}
PIDFILE=/var/run/docker.pid
PY=${PY:-.venv/bin/python}

say() { printf 'dockerd: %s\n' "$*" >&2; }
die() { printf 'dockerd: error: %s\n' "$*" >&2; exit 1; }
answers() { "$PY" scripts/dockerctl.py ping 2>/dev/null; }
with_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

start() {
  if with_systemd; then
    # restart, not start: a freshly installed docker.io is already running without our daemon.json
    say "(re)starting Docker with systemctl"
    systemctl restart docker || die "systemctl restart docker failed: see journalctl -u docker"
  else
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  fi
  local i
  for i in $(seq 1 120); do
    answers && return 0
    sleep 0.5
  done
  tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
  die "dockerd did not answer within 60 s (log above: $DOCKERD_LOG)"
}

stop() {
  if with_systemd; then
    systemctl stop docker.socket docker || die "systemctl stop docker failed"
    return 0
  fi
  local pid i
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { say "dockerd is not running"; return 0; }
  say "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for i in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  die "dockerd (pid $pid) did not exit within 60 s"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
