#!/usr/bin/env bash
# Installs every Debian package vid2mp3 needs to build, run and test.
# Idempotent: packages already present are not touched, and apt-get is not
# called at all when nothing is missing. Run as root (or via sudo).
#
#   scripts/install-deps.sh           build, runtime and test packages
#   scripts/install-deps.sh --build   only what building and running need
#                                     (`make run`: no servers)
#   scripts/install-deps.sh --runtime only what running a built vid2mp3
#                                     needs (the container image's last stage)
#   scripts/install-deps.sh --list build|runtime|test
#                                     print that list, one per line, and exit
set -euo pipefail
mode=all
case "${1:-}" in
  "") ;;
  --build) mode=build ;;
  --runtime) mode=runtime ;;
  --list) mode=list ;;
  *) echo "usage: $0 [--build|--runtime|--list build|runtime|test]" >&2; exit 2 ;;
esac

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
  shellcheck   # lints the shell in the scripts and the Dockerfile's RUN lines
  debootstrap  # a clean bookworm to prove the image's runtime packages suffice
  chromium     # the web page's tests run in it (tests/browser, playwright-core)
)
# Running a built binary: the packages of the shared libraries vid2mp3 links
# (readelf -d: NEEDED; libc6 is in every Debian) and the CA certificates its
# TLS connections verify against. The image's last stage installs exactly
# these; deploy/validate/packages.sh proves the list matches the binary, and
# deploy/validate/image.sh builds the image from the Dockerfile and runs it.
runtime=(
  libmicrohttpd12 libjansson4 libjwt0 libsodium23 libmariadb3 libsqlite3-0
  libmongoc-1.0-0 libbson-1.0-0 librabbitmq4 libavformat59 libavcodec59
  libavutil57 libswscale6 libswresample4 libcurl4 libssl3 ca-certificates
)

if [ "$mode" = list ]; then
  case "${2:-}" in
    build) printf '%s\n' "${build[@]}" ;;
    runtime) printf '%s\n' "${runtime[@]}" ;;
    test) printf '%s\n' "${test[@]}" ;;
    *) echo "usage: $0 --list build|runtime|test" >&2; exit 2 ;;
  esac
  exit 0
fi

case "$mode" in
  runtime) want=("${runtime[@]}") ;;
  build) want=("${build[@]}") ;;
  *)
    want=("${build[@]}" "${test[@]}")
    # Node.js and npm run test tooling (the MongoDB-wire server, the
    # deployment validators, the browser driver), and kubectl renders the
    # Kubernetes manifests offline. Many machines have their own; use those
    # when present (Debian's kubernetes-client would clash with them).
    command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
    command -v kubectl >/dev/null 2>&1 || want+=(kubernetes-client)
    ;;
esac

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
