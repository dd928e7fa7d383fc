#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS
# (default 20) from its seed corpus, as many at once as there are cores.
# Any crash, leak or sanitizer report
# fails the run; the reproducer is left in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVID2MP3_FUZZ=ON \
  -DVID2MP3_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_token fuzz_credentials fuzz_router fuzz_range \
  fuzz_message fuzz_mp3splice
mkdir -p build-fuzz/artifacts
# One target per core at a time (each is single-threaded); each one's
# output goes to build-fuzz/fuzz_T.log and its last lines are shown.
fuzz_one() { # target
  local t=$1 work=build-fuzz/corpus-$1
  mkdir -p "$work"
  "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ "$work" "tests/fuzz/corpus/$t" >"build-fuzz/fuzz_$t.log" 2>&1
}
failed=()
batch=() pids=()
finish_batch() {
  local i
  for i in "${!pids[@]}"; do
    if wait "${pids[i]}"; then
      echo "=== fuzz_${batch[i]} for ${secs}s"
    else
      echo "=== fuzz_${batch[i]} for ${secs}s: FAILED (build-fuzz/fuzz_${batch[i]}.log)"
      failed+=("${batch[i]}")
    fi
    tail -n 4 "build-fuzz/fuzz_${batch[i]}.log"
  done
  batch=() pids=()
}
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for t in token credentials router range message mp3splice; do
  fuzz_one "$t" &
  pids+=($!) batch+=("$t")
  [ ${#pids[@]} -lt "$(nproc)" ] || finish_batch
done
finish_batch
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed" >&2
  exit 1
fi
echo "=== fuzz: 6 targets, ${secs}s each ($(nproc) at a time), no findings"
