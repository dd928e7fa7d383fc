#!/usr/bin/env bash
# `make run`: build and start the whole system in one process with the
# embedded backends (SQLite, files under DATA_DIR). No server to install.
# On the first run it creates an administrator: ADMIN_EMAIL (default
# admin@localhost) with ADMIN_PASSWORD, or a generated password printed
# once. Ctrl-C stops it cleanly; running it again keeps all data.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVID2MP3_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target vid2mp3

export DATA_DIR=${DATA_DIR:-$PWD/data}
# libmongoc's /dev/shm counters are unused and can print a non-JSON line.
export MONGOC_DISABLE_SHM=1
bin=$PWD/build/vid2mp3
port=${AUTH_PORT:-5000}
gw_port=${GATEWAY_PORT:-8080}
admin=${ADMIN_EMAIL:-admin@localhost}

if ! "$bin" user list 2>/dev/null | grep -q "$(printf '\tadmin\t')"; then
  password=${ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}
  printf '%s\n' "$password" | "$bin" user add "$admin" --admin >/dev/null
  echo "Created administrator $admin"
  if [ -z "${ADMIN_PASSWORD:-}" ]; then
    echo "  password: $password   (shown once; set ADMIN_PASSWORD to choose it)"
  fi
else
  password=${ADMIN_PASSWORD:-PASSWORD}
fi

if [ -n "${SMTP_URL:-}" ]; then
  mail="sent through $SMTP_URL"
elif [ -n "${GMAIL_ADDRESS:-}" ]; then
  mail="sent through smtp.gmail.com:587 as $GMAIL_ADDRESS"
else
  mail="written to $DATA_DIR/outbox/ (one .eml file per job; set SMTP_URL to send them)"
fi

cat <<TXT

vid2mp3 is starting (data in $DATA_DIR; Ctrl-C stops it).
  gateway       http://localhost:$gw_port   (/login /upload /jobs /download)
  auth service  http://localhost:$port   (/healthz /readyz /metrics)
  emails        $mail

Log in, then upload a video:
  TOKEN=\$(curl -s -X POST -u '$admin:$password' http://localhost:$gw_port/login |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer \$TOKEN" -F file=@video.mp4 http://localhost:$gw_port/upload
  curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:$gw_port/jobs

TXT
exec "$bin" all
