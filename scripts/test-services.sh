#!/usr/bin/env bash
# Real servers for the tests, on 127.0.0.1, on ports chosen at run time,
# with their data under one state directory.
#
#   scripts/test-services.sh start [STATE_DIR]   start every server, write STATE_DIR/env
#   scripts/test-services.sh stop  [STATE_DIR]   stop them and remove STATE_DIR
#   scripts/test-services.sh mariadb-stop|mariadb-start [STATE_DIR]
#                                                stop or restart one server (outage tests)
#
# STATE_DIR defaults to $VID2MP3_TEST_STATE, else /tmp/vid2mp3-test-services.
# STATE_DIR/env holds `export VAR=value` lines for the tests:
#   VID2MP3_TEST_STATE, VID2MP3_TEST_MYSQL_HOST, _PORT, _USER, _PASSWORD
# Each test makes its own database (or vhost, queue, directory) inside
# these servers, so tests never share state.
set -euo pipefail

cmd=${1:-}
state=${2:-${VID2MP3_TEST_STATE:-/tmp/vid2mp3-test-services}}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # seconds, description, command...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "test-services: $what did not come up in ${secs}s" >&2
  return 1
}

as_root_flag() { [ "$(id -u)" -eq 0 ] && echo "--user=root" || true; }

# ---------- MariaDB ----------
mdb=$state/mariadb

mariadb_ping() {
  /usr/bin/mariadb-admin --no-defaults --socket="$mdb/sock" -uroot ping >/dev/null 2>&1
}

mariadb_run() {
  # shellcheck disable=SC1091
  . "$mdb/vars"
  if mariadb_ping; then return 0; fi # already running
  setsid /usr/sbin/mariadbd --no-defaults $(as_root_flag) \
    --datadir="$mdb/data" --socket="$mdb/sock" --port="$MDB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$mdb/pid" --log-error="$mdb/error.log" \
    --skip-name-resolve --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
    --max-connections=500 </dev/null >/dev/null 2>&1 &
  wait_for 60 "MariaDB on port $MDB_PORT" \
    /usr/bin/mariadb-admin --no-defaults --socket="$mdb/sock" -uroot ping \
    || { tail -20 "$mdb/error.log" >&2; return 1; }
}

mariadb_start() {
  mkdir -p "$mdb"
  local port password
  port=$(free_port)
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  printf 'MDB_PORT=%s\nMDB_PASSWORD=%s\n' "$port" "$password" >"$mdb/vars"
  /usr/bin/mariadb-install-db --no-defaults $(as_root_flag) --datadir="$mdb/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$mdb/install.log" 2>&1 \
    || { cat "$mdb/install.log" >&2; return 1; }
  mariadb_run
  /usr/bin/mariadb --no-defaults --socket="$mdb/sock" -uroot <<SQL
CREATE USER 'vid2mp3'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'vid2mp3'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
  cat >>"$state/env" <<ENV
export VID2MP3_TEST_MYSQL_HOST=127.0.0.1
export VID2MP3_TEST_MYSQL_PORT=$port
export VID2MP3_TEST_MYSQL_USER=vid2mp3
export VID2MP3_TEST_MYSQL_PASSWORD=$password
ENV
  echo "test-services: MariaDB on 127.0.0.1:$port"
}

mariadb_stop() {
  [ -d "$mdb" ] || return 0
  /usr/bin/mariadb-admin --no-defaults --socket="$mdb/sock" -uroot --shutdown-timeout=20 \
    shutdown >/dev/null 2>&1 || true
  local pids
  pids=$(pgrep -f -- "--datadir=$mdb/data" || true)
  if [ -n "$pids" ]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 300); do pgrep -f -- "--datadir=$mdb/data" >/dev/null || break; sleep 0.1; done
    pkill -9 -f -- "--datadir=$mdb/data" 2>/dev/null || true
  fi
  rm -f "$mdb/pid"
}

# ---------- commands ----------
case "$cmd" in
  start)
    if [ -d "$state" ]; then "$0" stop "$state"; fi
    mkdir -p "$state"
    echo "export VID2MP3_TEST_STATE=$state" >"$state/env"
    echo "export VID2MP3_TEST_SERVICES=$here/test-services.sh" >>"$state/env"
    mariadb_start
    echo "test-services: environment in $state/env"
    ;;
  stop)
    [ -d "$state" ] || exit 0
    mariadb_stop
    rm -rf "$state"
    ;;
  mariadb-stop) mariadb_stop ;;
  mariadb-start) mariadb_run ;;
  *)
    echo "usage: $0 start|stop|mariadb-stop|mariadb-start [STATE_DIR]" >&2
    exit 2
    ;;
esac
