#!/usr/bin/env bash
# bench/events.sh: what keeping web pages up to date costs the gateway.
# CLIENTS pages (default 50; a gateway serves at most 64 streams) follow the
# jobs of one user with 20 jobs for DURATION seconds (default 20), first as
# Server-Sent Events (GET /jobs/events, what the page does), then by
# polling GET /jobs?limit=20 once a second (the page's fallback, and what a
# page without the stream would do), beside the idle gateway in the same
# run. Measured: the gateway process's CPU time (utime + stime from
# /proc/PID/stat) per second of wall time, and its peak RSS. Also the delay
# from a job's change in the store to its event on a stream (median of 20).
# Prints one result line.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VID2MP3_BIN:-build/vid2mp3}
[ -x "$bin" ] || make build >/dev/null
clients=${CLIENTS:-50}
duration=${DURATION:-20}
command -v ffmpeg >/dev/null || { echo "bench/events.sh: ffmpeg is not installed" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. bench/lib.sh
dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
apid='' gpid='' cpids=()
# (a bare `wait` would wait for the servers too)
stop_clients() {
  [ "${#cpids[@]}" -gt 0 ] || return 0
  local p
  for p in "${cpids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${cpids[@]}" 2>/dev/null || true
  cpids=()
}
cleanup() {
  stop_clients
  local p
  for p in $gpid $apid; do stop_pid "$p"; done
  rm -rf "$dir"
}
trap cleanup EXIT

aport=$(free_port)
gport=$(free_port)
export DATA_DIR=$dir AUTH_PORT=$aport GATEWAY_PORT=$gport BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn \
  JWT_SECRET=bench-secret-0123456789abcdef0123456789 MONGOC_DISABLE_SHM=1
unset MYSQL_HOST MONGODB_URI RABBITMQ_URL
echo 'bench-password' | "$bin" user add bench@example.com --admin >/dev/null
"$bin" auth 2>"$dir/auth.log" &
apid=$!
"$bin" gateway 2>"$dir/gateway.log" &
gpid=$!
gw=http://127.0.0.1:$gport
for _ in $(seq 1 100); do curl -sf "$gw/healthz" >/dev/null && curl -sf "http://127.0.0.1:$aport/healthz" >/dev/null && break; sleep 0.1; done
token=$(curl -sf -X POST -u bench@example.com:bench-password "http://127.0.0.1:$aport/login" |
  "$py" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
auth="Authorization: Bearer $token"

# 20 jobs (no converter runs: they stay queued)
ffmpeg -nostdin -v error -f lavfi -i sine=frequency=440:duration=1 -c:a aac "$dir/clip.m4a"
for i in $(seq 1 20); do
  curl -sf -H "$auth" -F "file=@$dir/clip.m4a;filename=clip$i.m4a" "$gw/upload" >/dev/null
done

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$gpid/stat"; }
# measure SECONDS -> CPU milliseconds of the gateway per wall second
measure() {
  local t0 c0 t1 c1
  t0=$(date +%s.%N) c0=$(cpu_ticks)
  sleep "$1"
  t1=$(date +%s.%N) c1=$(cpu_ticks)
  awk -v c="$((c1 - c0))" -v k="$tck" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", c * 1000 / k / (t1 - t0) }'
}


idle=$(measure 5)

for _ in $(seq 1 "$clients"); do
  curl -sN -H "$auth" "$gw/jobs/events" >/dev/null 2>&1 &
  cpids+=($!)
done
sleep 2 # all open
sse=$(measure "$duration")
opened=$(curl -sf "$gw/metrics" | awk '/^http_requests_in_flight\{svc="gateway"\}/ { print $2 }')

# the delay from a change in the store to its event: a stream of our own
# reads events while jobs are uploaded (the new job's event is the change)
lat=$("$py" - "$gw" "$token" "$dir/clip.m4a" <<'PY'
import http.client, json, statistics, sys, time, urllib.request, uuid
gw, token, clip = sys.argv[1], sys.argv[2], sys.argv[3]
host = gw.split("//")[1]
c = http.client.HTTPConnection(host)
c.request("GET", "/jobs/events", headers={"Authorization": "Bearer " + token})
r = c.getresponse()
def events():
    name = None
    while True:
        line = r.fp.readline().decode()
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])
ev = events()
next(ev)  # the snapshot
data = open(clip, "rb").read()
delays = []
for i in range(20):
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l{i}.m4a\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(gw + "/upload", data=body, method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": "multipart/form-data; boundary=" + b})
    job = json.load(urllib.request.urlopen(req))["job_id"]
    t = time.monotonic()  # the job is in the store once the 202 is in
    for name, d in ev:
        if name == "job" and d.get("job_id") == job:
            delays.append((time.monotonic() - t) * 1000)
            break
print("%.0f %.0f" % (statistics.median(delays), max(delays)))
PY
)
stop_clients

for _ in $(seq 1 "$clients"); do
  (while :; do curl -sf -H "$auth" "$gw/jobs?limit=20" >/dev/null || true; sleep 1; done) &
  cpids+=($!)
done
sleep 2
poll=$(measure "$duration")
stop_clients
peak=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$gpid/status")

read -r lat_med lat_max <<<"$lat"
awk -v n="$clients" -v o="$opened" -v i="$idle" -v s="$sse" -v p="$poll" -v lm="$lat_med" -v lx="$lat_max" -v r="$peak" 'BEGIN {
  printf "events: %d pages (%d requests in flight) following 20 jobs; gateway CPU ms per s: event streams %.1f, polling GET /jobs every 1 s %.1f (streams/polling %.2fx), idle %.1f; change to event: median %d ms, max %d ms; peak RSS %d MiB\n",
    n, o, s, p, (p > 0 ? s / p : 0), i, lm, lx, r }'
