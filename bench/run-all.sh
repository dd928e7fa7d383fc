#!/usr/bin/env bash
# Runs every bench script; each prints its one result line.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
for b in bench/*.sh; do
  [ "$(basename "$b")" = run-all.sh ] && continue
  "$b"
done
