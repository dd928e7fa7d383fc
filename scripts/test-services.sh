#!/usr/bin/env bash
# Real servers for the tests, on 127.0.0.1, on ports chosen at run time,
# with their data under one state directory.
#
#   scripts/test-services.sh start [STATE_DIR]   start every server, write STATE_DIR/env
#   scripts/test-services.sh stop  [STATE_DIR]   stop them and remove STATE_DIR
#   scripts/test-services.sh mariadb-stop|mariadb-start [STATE_DIR]
#   scripts/test-services.sh rabbitmq-stop|rabbitmq-start [STATE_DIR]
#   scripts/test-services.sh mongo-stop|mongo-start [STATE_DIR]
#   scripts/test-services.sh smtp-stop|smtp-start [STATE_DIR]
#                                                stop or restart one server (outage tests),
#                                                same port, same data (smtp: the STARTTLS
#                                                instance only)
#
# STATE_DIR defaults to $VID2MP3_TEST_STATE, else /tmp/vid2mp3-test-services.
# STATE_DIR/env holds `export VAR=value` lines for the tests:
#   VID2MP3_TEST_STATE, VID2MP3_TEST_SERVICES (this script),
#   VID2MP3_TEST_MYSQL_HOST, _PORT, _USER, _PASSWORD (MariaDB),
#   VID2MP3_TEST_AMQP_URL (RabbitMQ), VID2MP3_TEST_MONGODB_URI (MongoDB wire),
#   VID2MP3_TEST_SMTP_PORT (SMTP sink offering STARTTLS, tests/smtp_sink.py),
#   VID2MP3_TEST_SMTP_PLAIN_PORT (SMTP sink without STARTTLS, AUTH in the clear),
#   VID2MP3_TEST_SMTP_USER, _PASSWORD (both sinks), VID2MP3_TEST_SMTP_CA (the
#   sink's self-signed certificate), VID2MP3_TEST_SMTP_SPOOL, _PLAIN_SPOOL
#   (mail/<rcpt>/*.eml and events.log of each sink; see tests/smtp_sink.py)
# Each test makes its own database (or vhost, queue, directory) inside
# these servers, so tests never share state.
set -euo pipefail

cmd=${1:-}
state=${2:-${VID2MP3_TEST_STATE:-/tmp/vid2mp3-test-services}}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

free_port() { "$here/free-port"; }

wait_for() { # seconds, description, command...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "test-services: $what did not come up in ${secs}s" >&2
  return 1
}

# mariadbd refuses to run as root unless told to
root_flag=()
if [ "$(id -u)" -eq 0 ]; then root_flag=(--user=root); fi

# ---------- MariaDB ----------
mdb=$state/mariadb

mariadb_ping() {
  /usr/bin/mariadb-admin --no-defaults --socket="$mdb/sock" -uroot ping >/dev/null 2>&1
}

mariadb_run() {
  # shellcheck disable=SC1091
  . "$mdb/vars"
  if mariadb_ping; then return 0; fi # already running
  setsid /usr/sbin/mariadbd --no-defaults "${root_flag[@]}" \
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
  /usr/bin/mariadb-install-db --no-defaults "${root_flag[@]}" --datadir="$mdb/data" \
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
    # shellcheck disable=SC2086 # one PID per word
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 300); do pgrep -f -- "--datadir=$mdb/data" >/dev/null || break; sleep 0.1; done
    pkill -9 -f -- "--datadir=$mdb/data" 2>/dev/null || true
  fi
  rm -f "$mdb/pid"
}

# ---------- RabbitMQ ----------
# Its own node name, ports (AMQP, distribution, epmd), Mnesia dir, logs and
# Erlang cookie under the state dir, so it never meets a system RabbitMQ.
rmq=$state/rabbitmq

rabbit_env() {
  # shellcheck disable=SC1091
  . "$rmq/vars"
  export HOME=$rmq RABBITMQ_NODENAME=$RMQ_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$RMQ_PORT RABBITMQ_DIST_PORT=$RMQ_DIST_PORT \
    ERL_EPMD_PORT=$RMQ_EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE=$rmq/mnesia RABBITMQ_LOG_BASE=$rmq/log \
    RABBITMQ_CONFIG_FILE=$rmq/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=$rmq/enabled_plugins \
    RABBITMQ_PID_FILE=$rmq/pid RABBITMQ_ADVANCED_CONFIG_FILE=$rmq/advanced.config
}

rabbit_ctl() { (rabbit_env && /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RMQ_NODE" "$@"); }

rabbit_run() {
  if rabbit_ctl status >/dev/null 2>&1; then return 0; fi # already running
  # `;` not `&&`: only the server goes to the background, so no copy of this
  # shell lingers holding the caller's stdout open
  (
    rabbit_env
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$rmq/server.log" 2>&1 &
  )
  # await_startup fails at once while the node is not yet reachable: retry
  for _ in $(seq 1 45); do
    if rabbit_ctl await_startup --timeout 60 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "test-services: RabbitMQ did not start" >&2
  tail -20 "$rmq/server.log" >&2
  return 1
}

rabbit_start() {
  mkdir -p "$rmq/mnesia" "$rmq/log"
  local port password
  port=$(free_port)
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  cat >"$rmq/vars" <<VARS
RMQ_NODE=vid2mp3test$$@localhost
RMQ_PORT=$port
RMQ_DIST_PORT=$(free_port)
RMQ_EPMD_PORT=$(free_port)
VARS
  head -c 20 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$rmq/.erlang.cookie"
  chmod 400 "$rmq/.erlang.cookie"
  echo '[].' >"$rmq/enabled_plugins"
  cat >"$rmq/rabbitmq.conf" <<CONF
default_user = vid2mp3
default_pass = $password
default_vhost = /
loopback_users = none
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.2
heartbeat = 10
CONF
  rabbit_run
  echo "export VID2MP3_TEST_AMQP_URL=amqp://vid2mp3:$password@127.0.0.1:$port/" >>"$state/env"
  echo "test-services: RabbitMQ on 127.0.0.1:$port"
}

rabbit_stop() {
  [ -f "$rmq/vars" ] || return 0
  local pid
  pid=$(cat "$rmq/pid" 2>/dev/null || true)
  rabbit_ctl stop >/dev/null 2>&1 || true # asynchronous: the node halts after answering
  if [ -n "$pid" ]; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  pkill -9 -f -- "-home $rmq " 2>/dev/null || true
  (rabbit_env && epmd -kill >/dev/null 2>&1) || true # the epmd on our port
  rm -f "$rmq/pid"
}

# ---------- MongoDB wire protocol (DESIGN §9: jongodb from npm, pinned) ----------
mongo=$state/mongo
jongodb_bin() { echo "$here/../node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb"; }

mongo_run() {
  # shellcheck disable=SC1091
  . "$mongo/vars"
  if [ -f "$mongo/pid" ] && kill -0 "$(cat "$mongo/pid")" 2>/dev/null; then return 0; fi
  setsid "$(jongodb_bin)" --host=127.0.0.1 --port="$MONGO_PORT" </dev/null >"$mongo/server.log" 2>&1 &
  echo $! >"$mongo/pid"
  wait_for 30 "jongodb on port $MONGO_PORT" grep -q JONGODB_URI "$mongo/server.log" \
    || { tail -20 "$mongo/server.log" >&2; return 1; }
}

mongo_start() {
  mkdir -p "$mongo"
  if [ ! -x "$(jongodb_bin)" ]; then
    (cd "$here/.." && npm ci --no-audit --no-fund --loglevel=error) >"$mongo/npm.log" 2>&1 \
      || { cat "$mongo/npm.log" >&2; return 1; }
  fi
  local port
  port=$(free_port)
  echo "MONGO_PORT=$port" >"$mongo/vars"
  mongo_run
  echo "export VID2MP3_TEST_MONGODB_URI=mongodb://127.0.0.1:$port" >>"$state/env"
  echo "test-services: MongoDB-wire server (jongodb) on 127.0.0.1:$port"
}

mongo_stop() {
  [ -f "$mongo/pid" ] || return 0
  local pid
  pid=$(cat "$mongo/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$mongo/pid"
}

# ---------- SMTP sinks (tests/smtp_sink.py, python3-aiosmtpd) ----------
# Two instances: "tls" offers STARTTLS and AUTH only after it; "plain" offers
# no STARTTLS and AUTH in the clear (to prove clients refuse to use it).
# The system python3: aiosmtpd is a Debian package, not in a pyenv/venv.
smtp=$state/smtp

# Running and not a zombie: an exited server stays a zombie until PID 1 reaps
# it, which can take a second or more in some containers.
smtp_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

smtp_run() { # instance (tls|plain)
  local inst=$1 dir=$smtp/$1
  # shellcheck disable=SC1091
  . "$smtp/vars"
  if [ -f "$dir/pid" ] && smtp_alive "$(cat "$dir/pid")"; then return 0; fi
  local port=$SMTP_PORT tls=(--tls-cert "$smtp/cert.pem" --tls-key "$smtp/key.pem")
  if [ "$inst" = plain ]; then port=$SMTP_PLAIN_PORT tls=(--no-starttls); fi
  setsid /usr/bin/python3 "$here/../tests/smtp_sink.py" --port "$port" --spool "$dir/spool" \
    "${tls[@]}" --user "$SMTP_USER" --password "$SMTP_PASSWORD" \
    </dev/null >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  wait_for 10 "SMTP sink ($inst) on port $port" grep -q "ready on" "$dir/server.log" \
    || { tail -20 "$dir/server.log" >&2; return 1; }
}

smtp_start() {
  mkdir -p "$smtp/tls/spool" "$smtp/plain/spool"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$smtp/key.pem" -out "$smtp/cert.pem" >"$smtp/openssl.log" 2>&1 \
    || { cat "$smtp/openssl.log" >&2; return 1; }
  local port plain_port user password
  port=$(free_port)
  plain_port=$(free_port)
  while [ "$plain_port" = "$port" ]; do plain_port=$(free_port); done
  user=vid2mp3-$(head -c 6 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  cat >"$smtp/vars" <<VARS
SMTP_PORT=$port
SMTP_PLAIN_PORT=$plain_port
SMTP_USER=$user
SMTP_PASSWORD=$password
VARS
  smtp_run tls
  smtp_run plain
  cat >>"$state/env" <<ENV
export VID2MP3_TEST_SMTP_PORT=$port
export VID2MP3_TEST_SMTP_PLAIN_PORT=$plain_port
export VID2MP3_TEST_SMTP_USER=$user
export VID2MP3_TEST_SMTP_PASSWORD=$password
export VID2MP3_TEST_SMTP_CA=$smtp/cert.pem
export VID2MP3_TEST_SMTP_SPOOL=$smtp/tls/spool
export VID2MP3_TEST_SMTP_PLAIN_SPOOL=$smtp/plain/spool
ENV
  echo "test-services: SMTP sinks on 127.0.0.1:$port (STARTTLS), 127.0.0.1:$plain_port (no TLS)"
}

smtp_stop() { # [instance]: both when none given
  local inst pid
  for inst in ${1:-tls plain}; do
    [ -f "$smtp/$inst/pid" ] || continue
    pid=$(cat "$smtp/$inst/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do smtp_alive "$pid" || break; sleep 0.1; done
    if smtp_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$smtp/$inst/pid"
  done
}

# ---------- commands ----------
case "$cmd" in
  start)
    if [ -d "$state" ]; then "$0" stop "$state"; fi
    mkdir -p "$state"
    echo "export VID2MP3_TEST_STATE=$state" >"$state/env"
    echo "export VID2MP3_TEST_SERVICES=$here/test-services.sh" >>"$state/env"
    mariadb_start
    rabbit_start
    mongo_start
    smtp_start
    echo "test-services: environment in $state/env"
    ;;
  stop)
    [ -d "$state" ] || exit 0
    mariadb_stop
    rabbit_stop
    mongo_stop
    smtp_stop
    rm -rf "$state"
    ;;
  mariadb-stop) mariadb_stop ;;
  mariadb-start) mariadb_run ;;
  rabbitmq-stop) rabbit_stop ;;
  rabbitmq-start) rabbit_run ;;
  mongo-stop) mongo_stop ;;
  mongo-start) mongo_run ;;
  smtp-stop) smtp_stop tls ;;
  smtp-start) smtp_run tls ;;
  *)
    echo "usage: $0 start|stop|{mariadb,rabbitmq,mongo,smtp}-{stop,start} [STATE_DIR]" >&2
    exit 2
    ;;
esac
