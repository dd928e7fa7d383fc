#!/usr/bin/env bash
# Installs every Debian package vid2mp3 needs to build, run and test.
# Idempotent: packages already present are not touched, and apt-get is not
# called at all when nothing is missing. Run as root (or via sudo).
#
#   scripts/install-deps.sh           build, runtime and test packages
#   scripts/install-deps.sh --build   only what building and running need
#                                     (`make run`: no servers)
set -euo pipefail
only_build=0
[ "${1:-}" = "--build" ] && only_build=1

# Build toolchain and libraries (DESIGN §9).
build=(
  build-essential cmake pkg-config clang clang-format
  libmicrohttpd-dev libjansson-dev libjwt-dev libsodium-dev
  libmongoc-dev libbson-dev librabbitmq-dev libmariadb-dev libsqlite3-dev
  libavformat-dev libavcodec-dev libavutil-dev libswresample-dev libswscale-dev
  libmp3lame-dev libcurl4-openssl-dev libssl-dev
  curl python3   # the commands `make run` prints
)
# Tests: unit framework, real servers on loopback, probes, load generator.
test=(
  libcmocka-dev libclang-rt-14-dev curl ffmpeg sqlite3 procps iproute2
  mariadb-server mariadb-client rabbitmq-server python3-aiosmtpd openssl
  wrk bc time
)

want=("${build[@]}")
if [ "$only_build" -eq 0 ]; then
  want+=("${test[@]}")
  # Node.js and npm run test tooling (the MongoDB-wire server, the browser
  # driver). Many machines have a Node.js of their own; use it when present.
  command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages such as mariadb-server and rabbitmq-server start their system
# service on install; the tests run their own instances instead, so forbid
# that with a policy-rc.d for the duration of the install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ "$made_policy" -eq 0 ] || $SUDO rm -f "$policy"; }
trap cleanup EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
