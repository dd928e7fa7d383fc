#!/usr/bin/env bash
# e2e/make-run: `make run` works as the README says.
#
#   tests/e2e/make_run_test.sh REPO_ROOT BUILD_DIR
#
# Starts scripts/run.sh (the recipe of `make run`, checked below) in the
# background in its own session, as a terminal would run it: DATA_DIR a
# fresh directory, AUTH_PORT and GATEWAY_PORT free ports, ADMIN_EMAIL and
# ADMIN_PASSWORD unset, VID2MP3_BUILD_DIR=BUILD_DIR (run.sh only builds the
# vid2mp3 target there: the binary under test). Then, from the outside:
#   1. the banner and /healthz appear; the generated password is printed;
#   2. the banner's curl commands, run as printed (in a directory holding a
#      video.mp4 made with ffmpeg), log in, upload (202, a job id) and list
#      the job;
#   3. the job gets done, its email lands in DATA_DIR/outbox/JOB_ID.eml and
#      its MP3 downloads and is an MP3 (ffprobe);
#   4. Ctrl-C (SIGINT to the process group) stops it with status 0 within
#      30 s, leaving no process behind;
#   5. a second run on the same DATA_DIR creates no administrator and
#      prints no password; its banner's commands (curl asks for the
#      password: given on standard input) log in with the first password,
#      and the first job is still listed, done and downloadable;
#   6. Ctrl-C again: status 0.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 REPO_ROOT BUILD_DIR" >&2
  exit 2
fi
root=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
started=$SECONDS

for tool in curl ffmpeg ffprobe python3 setsid make; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "make-run: FAIL: $tool is not installed (scripts/install-deps.sh)" >&2
    exit 1
  }
done

# Nothing from the caller's environment may pick other backends or an
# administrator: the test is `make run` on a fresh machine.
unset ADMIN_EMAIL ADMIN_PASSWORD MYSQL_HOST MONGODB_URI RABBITMQ_URL SMTP_URL SMTP_USER \
  SMTP_PASSWORD GMAIL_ADDRESS GMAIL_PASSWORD MAIL_FROM PUBLIC_URL JWT_SECRET JWT_ISSUER \
  VIDEO_QUEUE MP3_QUEUE BIND_ADDRESS UPLOAD_ADMIN_ONLY CRASH_AT LOG_LEVEL
# Test servers listen on loopback only (the banner still says localhost),
# and no proxy of the caller's may see the requests.
export BIND_ADDRESS=127.0.0.1 NO_PROXY='*' no_proxy='*'
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

# The test's own helpers: Debian's python3 when there is one (a python3
# earlier in PATH may be a slow shim); the banner's commands use PATH's.
py=python3
[ ! -x /usr/bin/python3 ] || py=/usr/bin/python3

tmp=$(mktemp -d /tmp/vid2mp3-make-run-XXXXXX)
data=$tmp/data
# No request, the banner's included, may hang the test until ctest's timeout.
export CURL_HOME=$tmp
echo 'max-time = 60' >"$CURL_HOME/.curlrc"
log=""
pid=""

cleanup() {
  if [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "make-run: FAIL: $*" >&2
  if [ -n "$log" ] && [ -f "$log" ]; then
    echo "--- last lines of $(basename "$log") ---" >&2
    tail -n 40 "$log" >&2
    echo "---" >&2
  fi
  exit 1
}
step() { echo "make-run: [$((SECONDS - started)) s] $*"; }

free_port() { "$py" "$root/scripts/free-port"; }

# The recipe of `make run` is scripts/run.sh and nothing else; the test runs
# that script itself, because make, hit by Ctrl-C too, exits with 130 after
# its child whatever the child's status (which is what is checked here).
recipe=$(make -s -n -C "$root" run 2>/dev/null | sed '/^make/d')
[ "$recipe" = "scripts/run.sh" ] || fail "make run runs \"$recipe\", not scripts/run.sh"

auth_port=$(free_port)
gw_port=$(free_port)
[ "$auth_port" != "$gw_port" ] || gw_port=$(free_port)
gw=http://localhost:$gw_port

# start LOG: run.sh in its own session (the process group a terminal's
# Ctrl-C reaches), SIGINT at its default disposition (a background job of a
# script would otherwise inherit it ignored). exec in run.sh: $pid ends up
# being `vid2mp3 all`'s.
start() {
  log=$1
  setsid env --default-signal=INT DATA_DIR="$data" AUTH_PORT="$auth_port" \
    GATEWAY_PORT="$gw_port" VID2MP3_BUILD_DIR="$build" "$root/scripts/run.sh" \
    >"$log" 2>&1 </dev/null &
  pid=$!
  local deadline=$((SECONDS + 300)) # a build, if the binary is not up to date
  until grep -q '^vid2mp3 is starting' "$log" && curl -sf -o /dev/null "$gw/healthz" &&
    curl -sf -o /dev/null "http://localhost:$auth_port/healthz"; do
    kill -0 "$pid" 2>/dev/null || {
      wait "$pid" && rc=0 || rc=$?
      pid=""
      fail "make run ended with status $rc before both ports answered /healthz"
    }
    [ $SECONDS -lt $deadline ] ||
      fail "no banner, or no /healthz on ports $gw_port and $auth_port, within 300 s"
    sleep 0.2
  done
  grep -qF "http://localhost:$gw_port " "$log" || fail "the banner does not show the gateway URL"
  grep -qF "http://localhost:$auth_port " "$log" || fail "the banner does not show the auth URL"
}

# stop: Ctrl-C; `vid2mp3 all` must exit 0 within 30 s, its group with it.
stop() {
  local t0=$SECONDS rc=0 group=$pid
  kill -INT -- "-$pid"
  # until it has exited: reaped by this shell already, or a zombie
  while kill -0 "$pid" 2>/dev/null &&
    [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]; do
    if [ $((SECONDS - t0)) -ge 30 ]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      fail "still running 30 s after Ctrl-C (killed)"
    fi
    sleep 0.1
  done
  wait "$pid" || rc=$?
  pid=""
  [ "$rc" -eq 0 ] || fail "Ctrl-C: exit status $rc, not 0"
  if kill -0 -- "-$group" 2>/dev/null; then
    kill -KILL -- "-$group" 2>/dev/null || true
    fail "processes of make run were left running after Ctrl-C"
  fi
  grep -q '"msg":"stopped"' "$log" || fail "no \"stopped\" line in the log after Ctrl-C"
  step "Ctrl-C: exit status 0 after $((SECONDS - t0)) s"
}

# banner_commands LOG: the command lines the banner prints, unindented (the
# TOKEN=... login and the following curl lines, up to the blank line).
banner_commands() {
  awk '/^  TOKEN=/ { on = 1 } on && /^$/ { exit } on { sub(/^  /, ""); print }' "$1"
}

# run_banner LOG OUT [STDIN]: runs the banner's commands as printed, with
# bash in $tmp (where video.mp4 is), then prints TOKEN; stdout to OUT. No
# controlling terminal (setsid): curl reads a password it asks for from
# standard input.
run_banner() {
  local script=$tmp/banner.sh
  banner_commands "$1" >"$script"
  grep -q 'file=@video.mp4' "$script" || fail "the banner has no upload of video.mp4"
  # shellcheck disable=SC2016 # $TOKEN is the banner script's
  printf '\nprintf "\\nTOKEN=%%s\\n" "$TOKEN"\n' >>"$script"
  (cd "$tmp" && setsid -w bash "$script" <"${3:-/dev/null}" >"$2" 2>"$tmp/banner.err") ||
    fail "the banner's commands failed: $(cat "$tmp/banner.err")"
}

# check_banner_output OUT LOG: the token, the 202 upload and the job in the
# list; prints "TOKEN JOB_ID".
check_banner_output() {
  "$py" - "$1" "$2" <<'PY'
import json, sys
out = open(sys.argv[1]).read()
body, _, tail = out.rpartition("\nTOKEN=")
token = tail.strip()
if len(token) < 20:
    sys.exit("the login printed no token (output: %r)" % out[:400])
dec, objs, i = json.JSONDecoder(), [], 0
while True:
    while i < len(body) and body[i].isspace():
        i += 1
    if i >= len(body):
        break
    obj, i = dec.raw_decode(body, i)
    objs.append(obj)
if len(objs) != 2:
    sys.exit("expected two JSON answers (upload, jobs), got %d: %r" % (len(objs), body[:400]))
up, jobs = objs
if "job_id" not in up or up.get("status") != "queued":
    sys.exit("the upload answered %r" % up)
ids = [j["job_id"] for j in jobs.get("jobs", [])]
if up["job_id"] not in ids:
    sys.exit("the job list %r does not show %s" % (ids, up["job_id"]))
seen = False
for line in open(sys.argv[2], errors="replace"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if rec.get("msg") == "request" and rec.get("path") == "/upload":
        if rec.get("status") != 202:
            sys.exit("the upload answered %s, not 202" % rec.get("status"))
        seen = True
if not seen:
    sys.exit("no access log line for POST /upload")
print(token, up["job_id"])
PY
}

# job_fields TOKEN JOB_ID: "STATUS MP3_FID|- ERROR" of GET /jobs/ID.
job_fields() {
  curl -sf -H "Authorization: Bearer $1" "$gw/jobs/$2" |
    "$py" -c 'import json,sys; j = json.load(sys.stdin); print(j["status"], j["mp3_fid"] or "-", j["error"] or "")'
}

# check_mp3 TOKEN MP3_FID: GET /download is an MP3.
check_mp3() {
  local out=$tmp/download.mp3 code
  rm -f "$out"
  code=$(curl -s -o "$out" -w '%{http_code}' -H "Authorization: Bearer $1" \
    "$gw/download?fid=$2") || fail "GET /download?fid=$2: curl failed"
  [ "$code" = 200 ] || fail "GET /download?fid=$2 answered $code"
  local codec
  codec=$(ffprobe -v error -select_streams a:0 -show_entries stream=codec_name \
    -of default=noprint_wrappers=1:nokey=1 "$out") || fail "ffprobe cannot read the download"
  [ "$codec" = mp3 ] || fail "the download's audio is \"$codec\", not mp3"
}

step "making video.mp4 with ffmpeg"
ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=s=320x240:d=3 -f lavfi -i sine=d=3 \
  -shortest -c:v libx264 -c:a aac "$tmp/video.mp4" || fail "ffmpeg could not make video.mp4"

# --- first run ------------------------------------------------------------
step "first run: scripts/run.sh (DATA_DIR $data, gateway $gw_port, auth $auth_port)"
start "$tmp/run1.log"
step "first run: up"
grep -q '^Created administrator admin@localhost$' "$log" ||
  fail "the first run did not say it created admin@localhost"
password=$(sed -n 's/^  password: \([^ ]*\).*/\1/p' "$log")
[ -n "$password" ] || fail "the first run printed no generated password"
[ "$(grep -c '^  password: ' "$log")" -eq 1 ] || fail "the password is printed more than once"

run_banner "$log" "$tmp/banner1.out"
read -r token job < <(check_banner_output "$tmp/banner1.out" "$log") ||
  fail "the banner's commands: see above"
[ -n "${job:-}" ] || fail "the banner's commands: see above"
step "banner commands: logged in, uploaded (202), job $job listed"

deadline=$((SECONDS + 180))
while :; do
  fields=$(job_fields "$token" "$job") || fail "GET /jobs/$job failed"
  read -r status mp3_fid error <<<"$fields"
  [ "$status" = "done" ] && break
  [ "$status" != failed ] || fail "job $job failed: $error"
  [ $SECONDS -lt $deadline ] || fail "job $job still $status after 180 s"
  sleep 0.2
done
[ "$mp3_fid" != - ] || fail "job $job is done without an mp3_fid"
step "job done (mp3 $mp3_fid)"

deadline=$((SECONDS + 60))
until [ -s "$data/outbox/$job.eml" ]; do
  [ $SECONDS -lt $deadline ] || fail "no email $data/outbox/$job.eml after 60 s"
  sleep 0.5
done
"$py" - "$data/outbox/$job.eml" "$mp3_fid" "$job" <<'PY' || fail "the email is not the one expected"
import email, email.policy, sys
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
if "admin@localhost" not in str(msg["To"]):
    sys.exit("the email is addressed to %s, not admin@localhost" % msg["To"])
text = "".join(p.get_content() for p in msg.walk() if p.get_content_maintype() == "text")
if "/#job=" + sys.argv[3] not in text:
    sys.exit("the email (%s) does not link the job on the web page" % msg["Subject"])
if sys.argv[2] not in text:
    sys.exit("the email (%s) does not give the MP3's file id" % msg["Subject"])
PY
step "email in outbox/$job.eml"

check_mp3 "$token" "$mp3_fid"
step "download is an MP3 (ffprobe)"

stop

# --- second run on the same data ------------------------------------------
step "second run on the same DATA_DIR, ADMIN_PASSWORD unset"
start "$tmp/run2.log"
step "second run: up"
! grep -q '^Created administrator' "$log" || fail "the second run created an administrator"
! grep -q '^  password: ' "$log" || fail "the second run printed a password"
admins=$(DATA_DIR=$data "$build/vid2mp3" user list | awk -F'\t' '$2 == "admin"' | wc -l)
[ "$admins" -eq 1 ] || fail "$admins administrators after the second run, not 1"
cmds=$(banner_commands "$log")
[[ $cmds != *PASSWORD* ]] || fail "the second banner's commands hold a PASSWORD placeholder"

# Its commands, as printed: curl asks for the password (given on stdin).
printf '%s\n' "$password" >"$tmp/password"
run_banner "$log" "$tmp/banner2.out" "$tmp/password"
read -r token2 job2 < <(check_banner_output "$tmp/banner2.out" "$log") ||
  fail "the second banner's commands: see above"
[ -n "${job2:-}" ] || fail "the second banner's commands: see above"
"$py" - "$tmp/banner2.out" "$job" <<'PY' || fail "the first job is not listed as done"
import json, sys
body = open(sys.argv[1]).read().rpartition("\nTOKEN=")[0]
dec = json.JSONDecoder()
_, i = dec.raw_decode(body.lstrip())
jobs = dec.raw_decode(body.lstrip()[i:].lstrip())[0]["jobs"]
first = [j for j in jobs if j["job_id"] == sys.argv[2]]
sys.exit(0 if first and first[0]["status"] == "done" else 1)
PY
step "second banner: logged in with the first password, job $job still listed (done)"
check_mp3 "$token2" "$mp3_fid"
step "first job's MP3 still downloads"

stop
step "passed"
