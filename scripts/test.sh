#!/usr/bin/env bash
# `make test`: everything CI does, from a clean clone, as root.
#  1. install the Debian packages the project needs (idempotent)
#  2. start the real test servers on loopback (scripts/test-services.sh)
#  3. check formatting, then build and run the whole suite under CTest:
#     once normally, once with AddressSanitizer + UndefinedBehaviorSanitizer
#     (recovery off, leaks detected), the web page's tests in Chromium
#     among them; validate the deployment files offline
#     (deploy/validate/run.sh) and build and run the image without Docker
#     (deploy/validate/image.sh); then run each libFuzzer target briefly
#  4. stop the servers, whatever happened; exit non-zero on any failure
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
scripts/install-deps.sh

state=$(mktemp -d /tmp/vid2mp3-services-XXXXXX)
image_log=$(mktemp /tmp/vid2mp3-image-log-XXXXXX)
image_pid=
cleanup() {
  [ -z "$image_pid" ] || kill -TERM "$image_pid" 2>/dev/null || true
  scripts/test-services.sh stop "$state" || true
  rm -f "$image_log"
}
trap cleanup EXIT INT TERM
scripts/test-services.sh start "$state"
# shellcheck disable=SC1091
. "$state/env"

build_suite() { # name, build dir, extra cmake args...
  local name=$1 dir=$2; shift 2
  echo "=== $name build ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVID2MP3_WERROR=ON -DVID2MP3_TESTS=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}
test_suite() { # name, build dir
  echo "=== $1 tests"
  (cd "$2" && ctest -j"$jobs" --output-on-failure --timeout 900)
}

# libmongoc keeps performance counters in /dev/shm/mongoc-PID, made by a
# library constructor before main(); a file left by a killed process whose
# PID comes round again makes it print a non-JSON warning on stderr. The
# counters are not used: off, for every process the tests start.
export MONGOC_DISABLE_SHM=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0

echo "=== browser test tooling (tests/browser: playwright-core, pinned)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "=== format check (clang-format, .clang-format)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
echo "=== shellcheck (every shell script)"
git ls-files '*.sh' .ci/run | xargs shellcheck

build_suite normal build
test_suite normal build
echo "=== deployment files (deploy/: offline validators and their negative tests)"
deploy/validate/run.sh build/vid2mp3
# The image build waits on the network and the disk much of its time: it
# runs while the sanitizer build compiles, and before the sanitizer tests,
# so that nothing timed runs beside it.
deploy/validate/image.sh >"$image_log" 2>&1 &
image_pid=$!
build_suite sanitizer build-asan -DVID2MP3_SANITIZE=ON
echo "=== container image: deploy/Dockerfile built and run without Docker (debootstrap, overlayfs, chroot)"
image_rc=0
wait "$image_pid" || image_rc=$?
image_pid=
cat "$image_log"
[ "$image_rc" -eq 0 ] || { echo "=== container image: FAILED (exit $image_rc)"; exit 1; }
test_suite sanitizer build-asan
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh
echo "=== all suites passed (normal and sanitizer builds, fuzzers)"
