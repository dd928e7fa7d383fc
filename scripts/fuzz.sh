#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS
# (default 20) from its seed corpus. Any crash, leak or sanitizer report
# fails the run; the reproducer is left in build-fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVID2MP3_FUZZ=ON \
  -DVID2MP3_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_token fuzz_credentials fuzz_router fuzz_range \
  fuzz_message fuzz_mp3splice
mkdir -p build-fuzz/artifacts
for t in token credentials router range message mp3splice; do
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "=== fuzz_$t for ${secs}s"
  build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ "$work" "tests/fuzz/corpus/$t" 2>&1 | tail -4
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz_$t failed" >&2; exit 1; }
done
echo "=== fuzz: 6 targets, ${secs}s each, no findings"
