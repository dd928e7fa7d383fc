#!/usr/bin/env bash
# bench/queue.sh: confirmed publishes/s and consumed messages/s of each
# queue backend, side by side, with bench/queue_bench.c: MESSAGES bodies of
# 200 bytes published by PUBLISHERS threads (each publish waits for its
# commit or broker confirm), then consumed and acked by one consumer with
# PREFETCH workers. The SQLite queue lives in a temporary directory; the
# RabbitMQ run uses $VID2MP3_TEST_AMQP_URL, or starts the test servers.
# Prints one result line.
#   MESSAGES (default 5000), PUBLISHERS (default 4), PREFETCH (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${VID2MP3_BUILD:-build}
bench=$build/tests/queue_bench
if [ ! -x "$bench" ]; then
  cmake -S . -B "$build" >/dev/null && cmake --build "$build" --target queue_bench -j"$(nproc)" >/dev/null
fi
messages=${MESSAGES:-5000}
publishers=${PUBLISHERS:-4}
prefetch=${PREFETCH:-16}

dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
started=
cleanup() {
  [ -n "$started" ] && scripts/test-services.sh stop "$dir/services" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
if [ -z "${VID2MP3_TEST_AMQP_URL:-}" ]; then
  scripts/test-services.sh start "$dir/services" >/dev/null 2>&1
  started=1
  # shellcheck disable=SC1091 # written by test-services.sh
  . "$dir/services/env"
fi
export LOG_LEVEL=warn

read -r s_pub s_con < <("$bench" sqlite "$dir/queue.db" "$messages" "$publishers" "$prefetch")
read -r a_pub a_con < <("$bench" amqp "$VID2MP3_TEST_AMQP_URL" "$messages" "$publishers" "$prefetch")
echo "queue: sqlite ${s_pub} publishes/s ${s_con} consumed/s | rabbitmq ${a_pub} confirmed publishes/s ${a_con} consumed/s | ${messages} msgs of 200 B, ${publishers} publishers, prefetch ${prefetch}, $(nproc) cores"
