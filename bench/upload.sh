#!/usr/bin/env bash
# bench/upload.sh: upload MB/s through the gateway (curl -F to POST
# /upload) for each file size, and GET /download MB/s of an MP3 blob, each
# with the gateway process's peak RSS (VmHWM, read right after, a fresh
# gateway per measurement: it must not grow with the size), for the files
# and the GridFS backends, beside dd writing the largest size to the same
# disk (fsync'd, like the files backend's commit) as the limit. Prints one
# result line.
#   SIZES_MIB (default "1024 4096"): upload sizes on the files backend.
#   GRIDFS_MIB (default 256; 0 skips GridFS): the GridFS upload size, small
#   because the pinned MongoDB-wire test server (DESIGN §9) keeps blobs in
#   memory and slows as it fills (~15 MB/s at 256 MiB, ~2 MB/s at 1 GiB);
#   VID2MP3_TEST_MONGODB_URI is used instead when set (the blobs and jobs
#   stay there).
#   DOWNLOAD_MIB (default 100): the MP3 blob downloaded from each backend.
# The upload files are an MPEG-TS header (the gateway probes the first
# bytes) extended with a hole to the size: curl reads zeros without
# touching the disk, which is left to the server alone. The auth service
# runs beside the gateway for the logins; the gateway's idle peak (after
# start, before any request but /readyz) is shown last.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES_MIB:-1024 4096}
gf_size=${GRIDFS_MIB:-256}
dl_size=${DOWNLOAD_MIB:-100}
build=${VID2MP3_BUILD_DIR:-build}
bin=$build/vid2mp3
put=$build/tests/blob_put
if [ ! -x "$bin" ] || [ ! -x "$put" ]; then
  cmake -S . -B "$build" -DVID2MP3_TESTS=ON >/dev/null
  cmake --build "$build" --target vid2mp3 blob_put >/dev/null
fi
command -v ffmpeg >/dev/null || { echo "bench/upload.sh: ffmpeg is not installed" >&2; exit 2; }

dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
mpid='' spid='' apid=''
stop_server() {
  local p
  for p in $spid $apid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  spid='' apid=''
}
cleanup() {
  stop_server
  if [ -n "$mpid" ]; then kill "$mpid" 2>/dev/null || true; wait "$mpid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

mbs() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
peak_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$spid/status"; }
max=0
for s in $sizes; do [ "$s" -gt "$max" ] && max=$s; done
limit=$((max > gf_size ? max : gf_size))
df_avail=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
if [ "$df_avail" -lt $((max * 2 + dl_size + 1024)) ]; then
  echo "bench/upload.sh: $df_avail MiB free under /tmp, need about $((max * 2 + dl_size + 1024))" >&2
  exit 2
fi

# dd: the disk's own figure for the largest size
t0=$(date +%s.%N)
dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$max" conv=fsync status=none
t1=$(date +%s.%N)
rm -f "$dir/dd.bin"
dd_w=$(mbs $((max * 1024 * 1024)) "$(echo "$t1 - $t0" | bc -l)")

# the media the gateway's probe accepts, and an MP3 to repeat into the blob
ffmpeg -nostdin -v error -f lavfi -i sine=frequency=440:duration=10 -f lavfi \
  -i testsrc=size=320x240:rate=25:duration=10 -c:v mpeg2video -c:a mp2 -f mpegts "$dir/head.ts"
ffmpeg -nostdin -v error -f lavfi -i sine=frequency=440:duration=30 -c:a libmp3lame -b:a 128k \
  "$dir/tone.mp3"

# next_data: a new DATA_DIR name. start_server fs|gridfs: an admin in
# DATA_DIR, the auth service and the gateway on free ports (the gateway
# checks tokens itself with JWT_SECRET), and a token from the auth service;
# sets apid, spid (the gateway), gport, token, idle.
email=bench@example.com
n=0
next_data() {
  n=$((n + 1))
  data=$dir/data$n
}
start_server() {
  gport=$(free_port)
  local aport p
  aport=$(free_port)
  export DATA_DIR=$data AUTH_PORT=$aport GATEWAY_PORT=$gport AUTH_SVC_ADDRESS=127.0.0.1:$aport \
    BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn MAX_UPLOAD_BYTES=$((limit * 1024 * 1024)) \
    JWT_SECRET=bench-secret-0123456789abcdef0123456789
  unset MYSQL_HOST RABBITMQ_URL MONGODB_URI
  if [ "$1" = gridfs ]; then export MONGODB_URI=$uri; fi
  echo 'bench-password' | "$bin" user add "$email" --admin >/dev/null
  "$bin" auth 2>"$data.auth.log" &
  apid=$!
  "$bin" gateway 2>"$data.log" &
  spid=$!
  for p in "$aport" "$gport"; do
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  if ! token=$(curl -sf -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"bench-password\"}" "http://127.0.0.1:$aport/login" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])') ||
    ! curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null; then
    echo "bench/upload.sh: the $1 servers did not start" >&2
    cat "$data".*log >&2
    exit 1
  fi
  idle=$(peak_mib)
}
finish_server() { # stops the server and drops its data (the big blobs)
  stop_server
  rm -rf "$data" "$data.log" "$data.auth.log"
}

# upload BACKEND MIB: a fresh server takes one file; sets result to
# "MIB MiB M MB/s peak R MiB"
upload() {
  local bytes=$(($2 * 1024 * 1024)) f=$dir/upload.ts out code t
  next_data
  start_server "$1"
  idles+=("$idle")
  cp "$dir/head.ts" "$f"
  truncate -s "$bytes" "$f"
  out=$(curl -sS -o "$dir/resp.json" -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $token" -F "file=@$f;type=video/mp2t" "http://127.0.0.1:$gport/upload")
  rm -f "$f"
  read -r code t <<<"$out"
  if [ "$code" != 202 ] || ! grep -q '"job_id"' "$dir/resp.json"; then
    echo "bench/upload.sh: $1 upload of $2 MiB answered $code: $(cat "$dir/resp.json")" >&2
    cat "$data.log" >&2
    exit 1
  fi
  result="$2 MiB $(mbs "$bytes" "$t") MB/s peak $(peak_mib) MiB"
  finish_server
}

# download BACKEND: puts a DOWNLOAD_MIB MP3 blob in the store before the
# server starts (so the peak is the download's alone), then fetches it;
# sets result like upload
download() {
  local bytes=$((dl_size * 1024 * 1024)) store=$uri fid len out code got t
  next_data
  [ "$1" = fs ] && store=$data/blobs
  read -r fid len < <({ while cat "$dir/tone.mp3"; do :; done; } 2>/dev/null | head -c "$bytes" |
    "$put" "$1" "$store" "$email" 2>"$dir/put.log")
  [ "${len:-}" = "$bytes" ] ||
    { echo "bench/upload.sh: blob_put stored ${len:-nothing}" >&2; cat "$dir/put.log" >&2; exit 1; }
  start_server "$1"
  idles+=("$idle")
  out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    -H "Authorization: Bearer $token" "http://127.0.0.1:$gport/download?fid=$fid")
  read -r code got t <<<"$out"
  if [ "$code" != 200 ] || [ "$got" != "$bytes" ]; then
    echo "bench/upload.sh: $1 download answered $code with $got of $bytes bytes" >&2
    cat "$data.log" >&2
    exit 1
  fi
  result="$dl_size MiB $(mbs "$bytes" "$t") MB/s peak $(peak_mib) MiB"
  finish_server
}

uri=
idles=()
fs_up=
for s in $sizes; do
  upload fs "$s"
  fs_up="${fs_up:+$fs_up, }$result"
done
download fs
line="fs upload $fs_up; download $result"

if [ "$gf_size" -gt 0 ]; then
  uri=${VID2MP3_TEST_MONGODB_URI:-}
  if [ -z "$uri" ]; then
    [ -x node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb ] ||
      npm ci --no-audit --no-fund --loglevel=error >/dev/null
    port=$(free_port)
    node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb --host=127.0.0.1 --port="$port" \
      >"$dir/mongo.log" 2>&1 &
    mpid=$!
    for _ in $(seq 1 300); do grep -q JONGODB_URI "$dir/mongo.log" && break; sleep 0.1; done
    uri=mongodb://127.0.0.1:$port
  fi
  upload gridfs "$gf_size"
  line="$line | gridfs (smaller: in-memory test server, slower as it fills) upload $result"
  download gridfs
  line="$line; download $result"
fi

echo "gateway via curl (gateway peak RSS, fresh server each): dd write ${max} MiB $dd_w MB/s | $line | idle server peak $(printf '%s\n' "${idles[@]}" | sort -un | sed -n '1p;$p' | paste -sd- -) MiB"
