#!/usr/bin/env bash
# bench/convert.sh: `vid2mp3 convert` against the ffmpeg command line
# (`ffmpeg -i IN -vn -c:a libmp3lame -q:a 2 OUT`, the same encoder and
# quality) on the same files: a 720p H.264/AAC MP4 and an MKV with Opus,
# each MINUTES long (default 10), RUNS runs each (default 3), alternating
# ours with one encoder thread (K=1), ours with K=THREADS (default 2,
# segment-parallel encoding) and ffmpeg's, so drift hits all alike.
# Prints wall time, CPU time (user + sys) and peak RSS (medians), the
# ratios ffmpeg/ours in wall time (speed-up) and K/K=1 in CPU time; then
# the jobs/minute of `vid2mp3 converter` with 1 and with 2 workers on a
# batch of BATCH (default 20) one-minute clips. One result line.
# The media are generated once with ffmpeg into $VID2MP3_BENCH_MEDIA
# (default /tmp/vid2mp3-bench-media) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-10}
runs=${RUNS:-3}
batch=${BATCH:-20}
build=${VID2MP3_BUILD_DIR:-build}
bin=$PWD/$build/vid2mp3
[ -x "$bin" ] || { cmake -S . -B "$build" >/dev/null && cmake --build "$build" -j"$(nproc)" --target vid2mp3 >/dev/null; }
media=${VID2MP3_BENCH_MEDIA:-/tmp/vid2mp3-bench-media}
mkdir -p "$media"
secs=$((minutes * 60))

gen() { # out, ffmpeg args...: made once, kept
  local out=$1 tmp
  shift
  [ -s "$out" ] && return 0
  tmp="${out%.*}.part.${out##*.}"
  ffmpeg -nostdin -loglevel error -y "$@" "$tmp"
  mv -f "$tmp" "$out"
}
mp4=$media/talk-${minutes}m-720p.mp4
mkv=$media/music-${minutes}m-opus.mkv
clip=$media/clip-1m.mp4
gen "$mp4" -f lavfi -i "testsrc2=s=1280x720:r=25:d=$secs" -f lavfi -i "sine=frequency=220:duration=$secs:sample_rate=48000" \
  -filter_complex "[1]aformat=channel_layouts=stereo[a]" -map 0:v -map "[a]" -c:v libx264 -preset ultrafast -crf 30 -c:a aac -b:a 160k -shortest
gen "$mkv" -f lavfi -i "testsrc2=s=640x360:r=25:d=$secs" -f lavfi -i "sine=frequency=330:duration=$secs:sample_rate=48000" \
  -filter_complex "[1]aformat=channel_layouts=stereo[a]" -map 0:v -map "[a]" -c:v libx264 -preset ultrafast -crf 32 -c:a libopus -b:a 128k -shortest
gen "$clip" -f lavfi -i "testsrc2=s=640x360:r=25:d=60" -f lavfi -i "sine=frequency=440:duration=60:sample_rate=44100" \
  -filter_complex "[1]aformat=channel_layouts=stereo[a]" -map 0:v -map "[a]" -c:v libx264 -preset ultrafast -crf 32 -c:a aac -shortest
for f in "$mp4" "$mkv" "$clip"; do [ -s "$f" ] || { echo "could not generate $f" >&2; exit 1; }; done

work=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

measure() { # label, command... -> appends "wall cpu rss_kib" to $work/label
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$work/t" >>"$work/$label"
}
median() { # file, column -> median
  sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

# The one-thread runs (K=1, ffmpeg) are pinned to each core in turn and
# their figures are the mean over the cores of the per-core medians: the
# cores of a virtual machine need not be equally fast (on the machine this
# was written on, one took 45% longer than the other for the same work),
# and K=2 runs on both, so a one-thread run on the faster core alone would
# flatter it. The per-core K=1 wall times are printed.
threads=${THREADS:-2}
cores=$(nproc)
mean_over_cores() { # label prefix, column -> mean of the per-core medians
  local sum=0 c
  for c in $(seq 0 $((cores - 1))); do sum=$(echo "$sum + $(median "$work/$1-cpu$c" "$2")" | bc -l); done
  echo "$sum / $cores" | bc -l
}
summary=""
for f in "$mp4" "$mkv"; do
  name=$(basename "$f")
  for _ in $(seq 1 "$runs"); do
    for c in $(seq 0 $((cores - 1))); do
      measure "k1-$name-cpu$c" taskset -c "$c" "$bin" convert "$f" "$work/k1.mp3" --threads 1
      measure "ffmpeg-$name-cpu$c" taskset -c "$c" ffmpeg -nostdin -loglevel error -y -i "$f" -vn \
        -c:a libmp3lame -q:a 2 "$work/ffmpeg.mp3"
    done
    measure "kn-$name" "$bin" convert "$f" "$work/kn.mp3" --threads "$threads"
  done
  read -r w1 c1 r1 < <(for c in 1 2 3; do mean_over_cores "k1-$name" "$c"; done | xargs)
  read -r fw fc fr < <(for c in 1 2 3; do mean_over_cores "ffmpeg-$name" "$c"; done | xargs)
  read -r wn cn rn < <(for c in 1 2 3; do median "$work/kn-$name" "$c"; done | xargs)
  percore=$(for c in $(seq 0 $((cores - 1))); do printf 'cpu%d %.2fs ' "$c" "$(median "$work/k1-$name-cpu$c" 1)"; done)
  summary+=$(printf '%s: K=1 %.2fs wall %.2fs cpu %d MiB (%s), K=%d %.2fs wall %.2fs cpu %d MiB, ffmpeg %.2fs wall %.2fs cpu %d MiB; speed-up vs ffmpeg K=1 x%.2f K=%d x%.2f, cpu K=%d/K=1 %.3f | ' \
    "$name" "$w1" "$c1" $((${r1%.*} / 1024)) "${percore% }" "$threads" "$wn" "$cn" $((rn / 1024)) "$fw" "$fc" $((${fr%.*} / 1024)) \
    "$(echo "$fw / $w1" | bc -l)" "$threads" "$(echo "$fw / $wn" | bc -l)" "$threads" "$(echo "$cn / $c1" | bc -l)")
done

# jobs/minute through the converter service: the embedded queue, a batch
# of clips uploaded through the gateway of `vid2mp3 all`'s stores
# shellcheck source=bench/lib.sh
. bench/lib.sh
throughput() { # workers -> jobs/minute
  local workers=$1 dir="$work/svc-$1"
  mkdir -p "$dir"
  local ap gp mp
  ap=$(free_port); gp=$(free_port); mp=$(free_port)
  export DATA_DIR=$dir BIND_ADDRESS=127.0.0.1 AUTH_PORT=$ap GATEWAY_PORT=$gp METRICS_PORT=$mp \
    AUTH_SVC_ADDRESS=127.0.0.1:$ap \
    JWT_SECRET=bench-secret-0123456789abcdef0123456789 MAX_UPLOAD_BYTES=4294967296
  echo "bench-password" | "$bin" user add bench@example.com --admin >/dev/null
  "$bin" auth >"$dir/auth.log" 2>&1 & pids+=($!)
  "$bin" gateway >"$dir/gw.log" 2>&1 & pids+=($!)
  local tok=""
  for _ in $(seq 1 100); do
    tok=$(curl -sf -X POST -u bench@example.com:bench-password "http://127.0.0.1:$gp/login" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' 2>/dev/null) && break
    sleep 0.1
  done
  [ -n "$tok" ] || { echo "bench: no login (see $dir/*.log)" >&2; exit 1; }
  for i in $(seq 1 "$batch"); do
    curl -sf -H "Authorization: Bearer $tok" -F "file=@$clip;filename=clip$i.mp4" "http://127.0.0.1:$gp/upload" >/dev/null
  done
  local t0 t1
  t0=$(date +%s.%N)
  CONVERTER_WORKERS=$workers "$bin" converter >"$dir/conv.log" 2>&1 & pids+=($!)
  local n=0 waited=0
  while [ "$n" -lt "$batch" ]; do
    sleep 0.2
    waited=$((waited + 1))
    [ "$waited" -lt 9000 ] || { echo "bench: converter did not finish (see $dir/conv.log)" >&2; exit 1; }
    n=$(curl -sf -H "Authorization: Bearer $tok" "http://127.0.0.1:$gp/jobs?limit=100" |
      python3 -c 'import json,sys; print(sum(j["status"] in ("done","failed") for j in json.load(sys.stdin)["jobs"]))' 2>/dev/null) || n=0
  done
  t1=$(date +%s.%N)
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  echo "$batch * 60 / ($t1 - $t0)" | bc -l
}
one=$(throughput 1)
two=$(throughput 2)
printf 'convert (medians of %d runs, %d-minute files): %sconverter batch of %d one-minute clips: 1 worker %.1f jobs/min, 2 workers %.1f jobs/min (x%.2f)\n' \
  "$runs" "$minutes" "$summary" "$batch" "$one" "$two" "$(echo "$two / $one" | bc -l)"
