#!/usr/bin/env bash
# `make run`: build and start the whole system in one process with the
# embedded backends (SQLite, files under DATA_DIR). No server to install.
# On the first run it creates an administrator: ADMIN_EMAIL (default
# admin@localhost) with ADMIN_PASSWORD, or a generated password printed
# once. Ctrl-C stops it cleanly; running it again keeps all data.
#
# VID2MP3_BUILD_DIR (default build, relative to the repository): where
# vid2mp3 is built. A directory that is already configured is only built
# (`--target vid2mp3`), never configured again, so `make run` leaves the
# options of an existing build (tests, sanitizers) as they are; a new one
# is configured RelWithDebInfo without the test suites.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --build
build_dir=${VID2MP3_BUILD_DIR:-build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVID2MP3_TESTS=OFF >/dev/null
fi
cmake --build "$build_dir" -j"$(nproc)" --target vid2mp3

export DATA_DIR=${DATA_DIR:-$PWD/data}
# libmongoc's /dev/shm counters are unused and can print a non-JSON line.
export MONGOC_DISABLE_SHM=1
bin=$(cd "$build_dir" && pwd)/vid2mp3
port=${AUTH_PORT:-5000}
gw_port=${GATEWAY_PORT:-8080}
want=${ADMIN_EMAIL:-admin@localhost}

# The administrators already there (email TAB admin TAB created), if any.
users=$("$bin" user list) || {
  echo "make run: cannot read the accounts in $DATA_DIR (see above)" >&2
  exit 1
}
admins=$(printf '%s\n' "$users" | awk -F'\t' '$2 == "admin" { print $1 }')

if [ -z "$admins" ]; then
  password=${ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}
  created=$(printf '%s\n' "$password" | "$bin" user add "$want" --admin) || {
    echo "make run: cannot create the administrator $want (ADMIN_EMAIL, ADMIN_PASSWORD): see above" >&2
    exit 1
  }
  admin=$(printf '%s\n' "$created" | awk '{ print $2 }') # as stored: lowercase
  echo "Created administrator $admin"
  if [ -z "${ADMIN_PASSWORD:-}" ]; then
    echo "  password: $password   (shown once; set ADMIN_PASSWORD to choose it)"
  fi
  login="-u $(printf '%s:%s' "$admin" "$password" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
  how="log in, then upload a video:"
else
  # ADMIN_EMAIL when it names an administrator, else the first one.
  admin=$(printf '%s\n' "$admins" | awk -v w="$want" 'tolower(w) == $0 { print; exit }')
  [ -n "$admin" ] || admin=$(printf '%s\n' "$admins" | head -n 1)
  if [ -n "${ADMIN_PASSWORD:-}" ]; then
    # ADMIN_PASSWORD chooses the password of a new administrator only: it
    # is what the account was created with if the same value is given again.
    login="-u $(printf '%s:%s' "$admin" "$ADMIN_PASSWORD" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
    how="log in as $admin with ADMIN_PASSWORD (it only chooses the password of a new
administrator: right if $admin was created with it), then upload a video:"
  else
    # The password is not kept anywhere readable: curl asks for it.
    login="-u '$admin'"
    how="log in as $admin with the password printed (or chosen with ADMIN_PASSWORD)
when it was created; curl asks for it. Then upload a video:"
  fi
fi

if [ -n "${SMTP_URL:-}" ]; then
  mail="sent through $SMTP_URL"
elif [ -n "${GMAIL_ADDRESS:-}" ]; then
  mail="sent through smtp.gmail.com:587 as $GMAIL_ADDRESS"
else
  mail="written to $DATA_DIR/outbox/ (one .eml file per job; set SMTP_URL to send them)"
fi
note=""
command -v curl >/dev/null 2>&1 || note="
(curl is not installed: apt-get install curl to run these.)"

cat <<TXT

vid2mp3 is starting (data in $DATA_DIR; Ctrl-C stops it).
  web page      http://localhost:$gw_port/   (open it in a browser and log in as $admin)
  gateway       http://localhost:$gw_port   (/login /upload /jobs /download)
  auth service  http://localhost:$port   (/healthz /readyz /metrics)
  emails        $mail

Or, from a terminal, $how$note
  TOKEN=\$(curl -s -X POST $login http://localhost:$gw_port/login |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -H "Authorization: Bearer \$TOKEN" -F file=@video.mp4 http://localhost:$gw_port/upload
  curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:$gw_port/jobs

TXT
exec "$bin" all
