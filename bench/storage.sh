#!/usr/bin/env bash
# bench/storage.sh: write and read throughput (MB/s) of one blob through the
# blobs interface, for each backend, with the process's peak RSS while
# writing and while reading (flat: the streams hold one chunk, whatever the
# size), beside dd to and from the same disk as the limit. Prints one
# result line.
#   SIZE_MIB (default 1024). GridFS uses VID2MP3_TEST_MONGODB_URI when set,
#   else starts the pinned MongoDB-wire test server (DESIGN §9) on a free
#   port; it keeps the blob in memory, so its figures are the wire path's,
#   not a disk's.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE_MIB:-1024}
build=${VID2MP3_BUILD_DIR:-build}
bin=$build/tests/storage_bench
[ -x "$bin" ] || { cmake -S . -B "$build" >/dev/null && cmake --build "$build" --target storage_bench >/dev/null; }

dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
mpid=
cleanup() {
  if [ -n "$mpid" ]; then kill "$mpid" 2>/dev/null || true; wait "$mpid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# dd: the disk's own figure, fsync'd like the fs backend's commit
mbs() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
bytes=$((size * 1024 * 1024))
t0=$(date +%s.%N)
dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$size" conv=fsync status=none
t1=$(date +%s.%N)
dd if="$dir/dd.bin" of=/dev/null bs=1M status=none
t2=$(date +%s.%N)
dd_w=$(mbs "$bytes" "$(echo "$t1 - $t0" | bc -l)")
dd_r=$(mbs "$bytes" "$(echo "$t2 - $t1" | bc -l)")
rm -f "$dir/dd.bin"

field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
summary() { # LINE -> "write W MB/s, read R MB/s, peak RSS w/r X/Y MiB"
  printf 'write %s MB/s, read %s MB/s, peak RSS writing %s MiB reading %s MiB' \
    "$(field "$1" write_mbs)" "$(field "$1" read_mbs)" \
    $(($(field "$1" writer_peak_rss_kib) / 1024)) $(($(field "$1" reader_peak_rss_kib) / 1024))
}

fs_line=$("$bin" fs "$dir/blobs" "$size" 2>"$dir/fs.log") || { cat "$dir/fs.log" >&2; exit 1; }

uri=${VID2MP3_TEST_MONGODB_URI:-}
if [ -z "$uri" ]; then
  [ -x node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb ] ||
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  port=$(python3 scripts/free-port)
  node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb --host=127.0.0.1 --port="$port" \
    >"$dir/mongo.log" 2>&1 &
  mpid=$!
  for _ in $(seq 1 300); do grep -q JONGODB_URI "$dir/mongo.log" && break; sleep 0.1; done
  uri=mongodb://127.0.0.1:$port
fi
gf_line=$("$bin" gridfs "$uri" "$size" 2>"$dir/gridfs.log") || { cat "$dir/gridfs.log" >&2; exit 1; }

echo "storage ${size} MiB blob: dd write $dd_w MB/s read $dd_r MB/s | fs $(summary "$fs_line") | gridfs $(summary "$gf_line")"
