#!/usr/bin/env bash
# bench/auth.sh: requests/s and p99 latency of the auth service, with wrk on
# loopback, for POST /validate and POST /login, beside GET /healthz on the
# same server in the same run (the HTTP floor: what the server does with no
# work at all). Prints one result line.
#   DURATION (s, default 10), CONNECTIONS (default 64), THREADS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/auth.sh: wrk is not installed (scripts/install-deps.sh)" >&2; exit 2; }
bin=${VID2MP3_BIN:-build/vid2mp3}
[ -x "$bin" ] || make build >/dev/null
duration=${DURATION:-10}
conns=${CONNECTIONS:-64}
threads=${THREADS:-2}

dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
port=$(python3 scripts/free-port)
export DATA_DIR=$dir AUTH_PORT=$port BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn \
  JWT_SECRET=bench-secret-0123456789abcdef0123456789
unset MYSQL_HOST
echo 'bench-password' | "$bin" user add bench@example.com >/dev/null
"$bin" auth 2>"$dir/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

token=$(curl -sf -X POST -u bench@example.com:bench-password "http://127.0.0.1:$port/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
cat >"$dir/validate.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$dir/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"bench-password"}'
LUA

# run NAME PATH CONNECTIONS [SCRIPT] -> "rps p99"
run() {
  local out
  out=$(wrk -t"$threads" -c"$3" -d"${duration}s" --latency ${4:+-s "$4"} "http://127.0.0.1:$port$2")
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [ -n "$non2xx" ]; then echo "bench/auth.sh: $1 had $non2xx non-2xx answers" >&2; exit 1; fi
  echo "$rps $p99"
}

read -r h_rps h_p99 < <(run healthz /healthz "$conns")
read -r v_rps v_p99 < <(run validate /validate "$conns" "$dir/validate.lua")
read -r l_rps l_p99 < <(run login /login 4 "$dir/login.lua")
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "auth: /validate ${v_rps} req/s p99 ${v_p99} | /login ${l_rps} req/s p99 ${l_p99} (Argon2id, 4 conns) | floor /healthz ${h_rps} req/s p99 ${h_p99} | peak RSS $((rss_kb / 1024)) MiB | wrk ${threads}t/${conns}c ${duration}s, $(nproc) cores"
