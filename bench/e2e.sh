#!/usr/bin/env bash
# bench/e2e.sh: the whole path as a user sees it, through the HTTP API.
#
#   1. latency: the time from the first byte of the upload (`curl -F` to
#      POST /upload) to the MP3 downloaded (GET /jobs/ID polled every 50 ms
#      until `done`, then GET /download?fid=MP3_FID answered 200 with an
#      MP3), for a 1-minute and a MINUTES_LONG-minute (default 10) 720p
#      H.264/AAC MP4:
#        embedded:    `vid2mp3 all` (files, SQLite jobs and queue, outbox),
#                     CONVERTER_WORKERS=2;
#        distributed: `vid2mp3 auth` (MariaDB), `gateway`, `converter`
#                     (CONVERTER_WORKERS=2) and `notifier` (SMTP with
#                     STARTTLS and AUTH) as four processes on GridFS,
#                     MongoDB jobs and RabbitMQ: the real servers of
#                     scripts/test-services.sh, started for this run and
#                     stopped at its end (about 30 s each way).
#      Beside them, in the same run, the command line a user would type
#      on the same file: `ffmpeg -i IN -vn -c:a libmp3lame -q:a 2 OUT` (the
#      same encoder and quality), run alternately with the embedded runs.
#      The 1-minute figures are medians of RUNS (default 3) runs; the long
#      file is sent once to each.
#      The MongoDB-wire server is the pinned in-memory test server (jongodb,
#      DESIGN §9), not MongoDB: GridFS uploads into it run at 6-15 MB/s
#      here and slow as it fills, and reading the video back is slow too,
#      so the distributed figures for the long file (315 MB at 10 minutes)
#      are mostly that server's speed, not ours.
#   2. throughput: BATCH (default 20, at most 100) one-minute 720p videos
#      uploaded back to back to `vid2mp3 gateway` (with `vid2mp3 auth`)
#      while 1, then 2, `vid2mp3 converter` processes (CONVERTER_WORKERS=1
#      each) share its DATA_DIR (embedded: files, SQLite jobs and queue);
#      videos/minute = BATCH / (first upload byte -> last job done),
#      medians of RUNS rounds, alternating 1 and 2 converters. The
#      uploads themselves take a good part of that time (their end is shown
#      on stderr): with two converters the batch is nearly upload-bound.
#      Not measured distributed: BATCH x 32 MB in the in-memory test
#      server would mostly measure how it slows as it fills.
# Prints one result line on stdout; the details of each run on stderr.
#   DISTRIBUTED=0 skips the distributed runs (and the test servers).
#   MINUTES_LONG shortens the long video (the distributed run of the
#   10-minute one takes about a minute, most of it the GridFS upload).
#   KEEP=1 keeps the work directory (each process's log, the data).
#   VID2MP3_BUILD_DIR (default build): where vid2mp3 is (built if missing).
# The media are generated once with ffmpeg into $VID2MP3_BENCH_MEDIA
# (default /tmp/vid2mp3-bench-media, shared with bench/convert.sh) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes_long=${MINUTES_LONG:-10}
runs=${RUNS:-3}
batch=${BATCH:-20}
distributed=${DISTRIBUTED:-1}
build=${VID2MP3_BUILD_DIR:-build}
bin=$PWD/$build/vid2mp3
py=/usr/bin/python3
# shellcheck source=bench/lib.sh
. bench/lib.sh

fail() {
  echo "bench/e2e.sh: $*" >&2
  exit 1
}
for tool in ffmpeg curl awk "$py"; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
if ! [ "$minutes_long" -ge 1 ] 2>/dev/null || ! [ "$runs" -ge 1 ] 2>/dev/null ||
  ! [ "$batch" -ge 1 ] 2>/dev/null || [ "$batch" -gt 100 ]; then
  fail "MINUTES_LONG and RUNS must be positive numbers, BATCH 1 to 100"
fi
[ -x "$bin" ] || { cmake -S . -B "$build" >/dev/null && cmake --build "$build" -j"$(nproc)" --target vid2mp3 >/dev/null; }

media=${VID2MP3_BENCH_MEDIA:-/tmp/vid2mp3-bench-media}
mkdir -p "$media"
gen() { # out, ffmpeg args...: made once, kept
  local out=$1 tmp
  shift
  [ -s "$out" ] && return 0
  echo "bench/e2e.sh: generating $out" >&2
  tmp="${out%.*}.part.${out##*.}"
  ffmpeg -nostdin -loglevel error -y "$@" "$tmp"
  mv -f "$tmp" "$out"
}
gen_720p() { # minutes -> the file name (as bench/convert.sh makes it)
  local secs=$(($1 * 60)) out=$media/talk-$1m-720p.mp4
  gen "$out" -f lavfi -i "testsrc2=s=1280x720:r=25:d=$secs" -f lavfi -i "sine=frequency=220:duration=$secs:sample_rate=48000" \
    -filter_complex "[1]aformat=channel_layouts=stereo[a]" -map 0:v -map "[a]" -c:v libx264 -preset ultrafast -crf 30 -c:a aac -b:a 160k -shortest
  [ -s "$out" ] || fail "could not generate $out"
}
gen_720p 1
gen_720p "$minutes_long"
short=$media/talk-1m-720p.mp4
long=$media/talk-${minutes_long}m-720p.mp4

work=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
state=$work/services # scripts/test-services.sh's state, when started
services=0
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=()
}
cleanup() {
  stop_all
  if [ "$services" = 1 ]; then scripts/test-services.sh stop "$state" >/dev/null 2>&1 || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "bench/e2e.sh: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; } # ns, ns -> seconds
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
json_field() { # name: the string value of a top-level field of the JSON on stdin (empty: none)
  "$py" -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}
hex_field() { # name: the hex id in field NAME of the JSON on stdin, without starting python (timed paths)
  sed -n "s/.*\"$1\": *\"\([0-9a-f]*\)\".*/\1/p"
}

# start NAME LOG_PREFIX VAR=VALUE...: `vid2mp3 NAME` in a clean environment
# with those variables, in the background; its log in LOG_PREFIX.NAME.log
start() {
  local name=$1 prefix=$2
  shift 2
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" MONGOC_DISABLE_SHM=1 BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn \
    "$@" "$bin" "$name" >"$prefix.$name.log" 2>&1 &
  pids+=($!)
}
# wait_ready URL LOG: until URL answers 2xx (60 s at most), or the last
# process started exits
wait_ready() {
  local url=$1 log=$2 pid=${pids[-1]}
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; fail "the process logging to $log exited"; }
    sleep 0.1
  done
  tail -20 "$log" >&2
  fail "$url did not answer in 60 s (log: $log)"
}
# add_admin LOG VAR=VALUE...: admin@example.com, an administrator, with
# the stores those variables name
email=admin@example.com password=bench-password-0123
add_admin() {
  local log=$1
  shift
  echo "$password" | env -i PATH="$PATH" HOME="${HOME:-/tmp}" MONGOC_DISABLE_SHM=1 "$@" \
    "$bin" user add "$email" --admin >"$log" 2>&1 || { cat "$log" >&2; fail "user add failed"; }
}
# login GATEWAY_URL: sets token (POST /login with JSON at the gateway)
login() {
  token=$(curl -sf -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$1/login" | json_field token) || true
  [ -n "$token" ] || fail "no token from $1/login"
}
# upload GATEWAY_URL FILE NAME: POST /upload; sets job (the job id)
upload() {
  local code
  code=$(curl -sS -o "$work/upload.json" -w '%{http_code}' -H "Authorization: Bearer $token" \
    -F "file=@$2;filename=$3;type=video/mp4" "$1/upload") || fail "upload of $2 to $1 failed"
  [ "$code" = 202 ] || fail "upload of $2 answered $code: $(cat "$work/upload.json")"
  job=$(hex_field job_id <"$work/upload.json")
  [ -n "$job" ] || fail "upload answered no job id: $(cat "$work/upload.json")"
}
# latency GATEWAY_URL FILE LABEL: sets result (seconds, first upload byte
# to MP3 downloaded); the split on stderr
latency() {
  local gw=$1 f=$2 label=$3 t0 t1 t2 t3 status mp3 out code size
  t0=$(now_ns)
  upload "$gw" "$f" "e2e-$(basename "$f")"
  t1=$(now_ns)
  # one python process polls over one keep-alive connection (a curl
  # process per poll costs ~30 ms here, more than the interval)
  read -r status t2 mp3 < <("$py" -c '
import http.client, json, sys, time
port, token, job = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn, end, body = None, time.monotonic() + 1800, {}
while time.monotonic() < end:
    try:
        conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/jobs/" + job, headers={"Authorization": "Bearer " + token})
        r = conn.getresponse()
        data = r.read()
        if r.status == 200:
            body = json.loads(data)
            if body["status"] in ("done", "failed"):
                print(body["status"], time.time_ns(), body.get("mp3_fid") or "-")
                sys.exit(0)
    except (OSError, http.client.HTTPException, ValueError):
        conn = None
    time.sleep(0.05)
print("timeout", time.time_ns(), "-")
' "${gw##*:}" "$token" "$job") || status=none
  [ "$status" = "done" ] || fail "$label: job $job ended $status: $(curl -s -H "Authorization: Bearer $token" "$gw/jobs/$job")"
  out=$(curl -sS -o "$work/e2e.mp3" -w '%{http_code} %{size_download}' \
    -H "Authorization: Bearer $token" "$gw/download?fid=$mp3") || out="failed 0"
  t3=$(now_ns)
  read -r code size <<<"$out"
  { [ "$code" = 200 ] && [ "$size" -gt 0 ]; } || fail "$label: download of $mp3 answered $code ($size bytes)"
  [ "$(head -c 3 "$work/e2e.mp3")" = ID3 ] || fail "$label: the download is not an MP3 with ID3 tags"
  result=$(secs "$t0" "$t3")
  echo "e2e: $label: ${result} s = upload $(secs "$t0" "$t1") + conversion (202 -> seen done) $(secs "$t1" "$t2") + download (with two process start-ups) $(secs "$t2" "$t3") ($((size / 1024)) KiB MP3)" >&2
}
# ffmpeg_ref FILE: sets result (seconds of the ffmpeg command line)
ffmpeg_ref() {
  local t0 t1
  t0=$(now_ns)
  ffmpeg -nostdin -loglevel error -y -i "$1" -vn -c:a libmp3lame -q:a 2 "$work/ffmpeg.mp3"
  t1=$(now_ns)
  result=$(secs "$t0" "$t1")
  echo "e2e: ffmpeg CLI $(basename "$1"): $result s" >&2
}

# --- embedded: vid2mp3 all, beside the ffmpeg command line ---
jwt=bench-secret-0123456789abcdef0123456789
emb=$work/embedded
mkdir -p "$emb"
ap=$(free_port) gp=$(free_port) mp=$(free_port)
emb_env=(DATA_DIR="$emb" AUTH_PORT="$ap" GATEWAY_PORT="$gp" METRICS_PORT="$mp" JWT_SECRET="$jwt"
  CONVERTER_WORKERS=2 MAX_UPLOAD_BYTES=4294967296)
add_admin "$emb.useradd.log" "${emb_env[@]}"
start all "$emb" "${emb_env[@]}"
wait_ready "http://127.0.0.1:$gp/readyz" "$emb.all.log"
wait_ready "http://127.0.0.1:$ap/readyz" "$emb.all.log"
login "http://127.0.0.1:$gp"
# alternating with the reference, the ffmpeg command line, so drift hits both alike
emb_short=() ff_short=()
for i in $(seq 1 "$runs"); do
  ffmpeg_ref "$short"
  ff_short+=("$result")
  latency "http://127.0.0.1:$gp" "$short" "embedded 1-min run $i"
  emb_short+=("$result")
done
ffmpeg_ref "$long"
ff_long=$result
latency "http://127.0.0.1:$gp" "$long" "embedded ${minutes_long}-min"
emb_long=$result
stop_all

# --- throughput: gateway + N converter processes on one DATA_DIR ---
throughput() { # converters, round -> sets result (videos/minute)
  local n=$1 dir=$work/batch-$1-$2 ap gp cp t0 t1 done_n failed_n i
  mkdir -p "$dir"
  ap=$(free_port) gp=$(free_port)
  local envs=(DATA_DIR="$dir" AUTH_PORT="$ap" GATEWAY_PORT="$gp" AUTH_SVC_ADDRESS="127.0.0.1:$ap"
    JWT_SECRET="$jwt" MAX_UPLOAD_BYTES=4294967296)
  add_admin "$dir.useradd.log" "${envs[@]}"
  start auth "$dir" "${envs[@]}"
  wait_ready "http://127.0.0.1:$ap/readyz" "$dir.auth.log"
  start gateway "$dir" "${envs[@]}"
  wait_ready "http://127.0.0.1:$gp/readyz" "$dir.gateway.log"
  for i in $(seq 1 "$n"); do
    cp=$(free_port)
    start converter "$dir.$i" "${envs[@]}" METRICS_PORT="$cp" CONVERTER_WORKERS=1
    wait_ready "http://127.0.0.1:$cp/readyz" "$dir.$i.converter.log"
  done
  login "http://127.0.0.1:$gp"
  t0=$(now_ns)
  for i in $(seq 1 "$batch"); do
    upload "http://127.0.0.1:$gp" "$short" "batch-$i.mp4"
  done
  echo "e2e: batch of $batch, $n converter(s), round $2: uploads done after $(secs "$t0" "$(now_ns)") s" >&2
  while :; do
    read -r done_n failed_n < <(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$gp/jobs?limit=100" |
      "$py" -c 'import json,sys; j=json.load(sys.stdin)["jobs"]; print(sum(x["status"]=="done" for x in j), sum(x["status"]=="failed" for x in j))' 2>/dev/null ||
      echo "0 0")
    [ "$failed_n" = 0 ] || fail "batch: $failed_n job(s) failed (logs: $dir.*.log)"
    [ "$done_n" -lt "$batch" ] || break
    [ $(($(now_ns) - t0)) -lt 3600000000000 ] || fail "batch: $done_n of $batch done after an hour"
    sleep 0.1
  done
  t1=$(now_ns)
  result=$(awk -v n="$batch" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n * 60 / ((b - a) / 1e9) }')
  echo "e2e: batch of $batch, $n converter(s), round $2: all done after $(secs "$t0" "$t1") s: $result videos/min" >&2
  stop_all
}
tp1s=() tp2s=()
for r in $(seq 1 "$runs"); do # alternating, so drift hits both alike
  throughput 1 "$r"
  tp1s+=("$result")
  throughput 2 "$r"
  tp2s+=("$result")
done
tp1=$(median "${tp1s[@]}") tp2=$(median "${tp2s[@]}")

# --- distributed: four processes on MariaDB, GridFS, RabbitMQ, SMTP ---
dist_part=""
if [ "$distributed" != 0 ]; then
  echo "e2e: starting the test servers (scripts/test-services.sh)" >&2
  services=1
  scripts/test-services.sh start "$state" >"$work/services.log" 2>&1 ||
    { cat "$work/services.log" >&2; fail "the test servers did not start"; }
  # shellcheck disable=SC1091
  . "$state/env"
  run=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
  db=e2e_$run
  mariadb --no-defaults -h"$VID2MP3_TEST_MYSQL_HOST" -P"$VID2MP3_TEST_MYSQL_PORT" \
    -u"$VID2MP3_TEST_MYSQL_USER" -p"$VID2MP3_TEST_MYSQL_PASSWORD" -e "CREATE DATABASE $db" ||
    fail "could not create the database $db"
  dist=$work/distributed
  mkdir -p "$dist"
  ap=$(free_port) gp=$(free_port) cp=$(free_port) np=$(free_port)
  queues=(VIDEO_QUEUE="e2e-video-$run" MP3_QUEUE="e2e-mp3-$run")
  stores=(MONGODB_URI="$VID2MP3_TEST_MONGODB_URI" RABBITMQ_URL="$VID2MP3_TEST_AMQP_URL" "${queues[@]}" DATA_DIR="$dist")
  auth_env=(MYSQL_HOST="$VID2MP3_TEST_MYSQL_HOST" MYSQL_PORT="$VID2MP3_TEST_MYSQL_PORT"
    MYSQL_USER="$VID2MP3_TEST_MYSQL_USER" MYSQL_PASSWORD="$VID2MP3_TEST_MYSQL_PASSWORD" MYSQL_DB="$db"
    JWT_SECRET="$jwt" AUTH_PORT="$ap" DATA_DIR="$dist")
  add_admin "$dist.useradd.log" "${auth_env[@]}"
  start auth "$dist" "${auth_env[@]}"
  wait_ready "http://127.0.0.1:$ap/readyz" "$dist.auth.log"
  start gateway "$dist" "${stores[@]}" AUTH_SVC_ADDRESS="127.0.0.1:$ap" JWT_SECRET="$jwt" GATEWAY_PORT="$gp" \
    MAX_UPLOAD_BYTES=4294967296
  wait_ready "http://127.0.0.1:$gp/readyz" "$dist.gateway.log"
  start converter "$dist" "${stores[@]}" METRICS_PORT="$cp" CONVERTER_WORKERS=2
  wait_ready "http://127.0.0.1:$cp/readyz" "$dist.converter.log"
  start notifier "$dist" "${stores[@]}" METRICS_PORT="$np" PUBLIC_URL="http://127.0.0.1:$gp" \
    SMTP_URL="smtp://127.0.0.1:$VID2MP3_TEST_SMTP_PORT" SMTP_USER="$VID2MP3_TEST_SMTP_USER" \
    SMTP_PASSWORD="$VID2MP3_TEST_SMTP_PASSWORD" SMTP_CA_FILE="$VID2MP3_TEST_SMTP_CA" SMTP_TLS=required
  wait_ready "http://127.0.0.1:$np/readyz" "$dist.notifier.log"
  login "http://127.0.0.1:$gp"
  dist_short=()
  for i in $(seq 1 "$runs"); do
    latency "http://127.0.0.1:$gp" "$short" "distributed 1-min run $i"
    dist_short+=("$result")
  done
  latency "http://127.0.0.1:$gp" "$long" "distributed ${minutes_long}-min"
  dist_long=$result
  # the emails: one per job, when the notifier has caught up (10 s at most)
  want=$((runs + 1)) got=0
  for _ in $(seq 1 100); do
    got=$(find "$VID2MP3_TEST_SMTP_SPOOL" -name '*.eml' 2>/dev/null | wc -l)
    [ "$got" -lt "$want" ] || break
    sleep 0.1
  done
  echo "e2e: distributed: $got of $want emails received by the SMTP server" >&2
  stop_all
  dist_part=", distributed $(median "${dist_short[@]}") s"
  dist_long_part=", distributed $dist_long s"
fi

printf 'e2e (first upload byte -> MP3 downloaded, 720p H.264/AAC): 1-min: embedded %s s%s (ffmpeg CLI %s s; medians of %d); %d-min: embedded %s s%s (ffmpeg CLI %s s); batch of %d 1-min: 1 converter %s/min, 2 converters %s/min (x%s; medians of %d)\n' \
  "$(median "${emb_short[@]}")" "$dist_part" "$(median "${ff_short[@]}")" "$runs" \
  "$minutes_long" "$emb_long" "${dist_long_part:-}" "$ff_long" \
  "$batch" "$tp1" "$tp2" "$(awk -v a="$tp1" -v b="$tp2" 'BEGIN { printf "%.2f", b / a }')" "$runs"
