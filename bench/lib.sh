# shellcheck shell=bash
# bench/lib.sh: helpers the bench scripts share; source it after `cd` to
# the repository. Uses $py (default /usr/bin/python3, the system's).
py=${py:-/usr/bin/python3}

# A TCP port on 127.0.0.1 that was free a moment ago (scripts/free-port).
free_port() { "$py" scripts/free-port; }

# Stops process PID: SIGTERM, then SIGKILL after 10 s; reaps it.
stop_pid() {
  local p=$1
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
