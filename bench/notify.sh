#!/usr/bin/env bash
# bench/notify.sh: emails/s and latency of `vid2mp3 notifier` (embedded
# SQLite jobs and queue, SMTP with STARTTLS and AUTH), beside the curl
# command line sending as many emails to the same server, in one run
# (absolute figures drift on a shared machine; the ratio is the result).
#
#   1. throughput: EMAILS done jobs (owners u<i>-RUNID@bench.example, made by
#      bench/notify_bench.c in a fresh DATA_DIR) have their outcome messages
#      published at once on MP3_QUEUE while the notifier (WORKERS senders)
#      runs; emails/s = EMAILS / (first publish -> last email stored by the
#      server).
#   2. latency: RATE outcomes a second for LATENCY_SECONDS, each email's
#      latency = stored by the server - its publish committed; p50 and p99.
#      The publisher is another process, which the notifier's SQLite queue
#      sees by polling every 200 ms when idle: up to 200 ms (100 on average)
#      of every latency is that poll, a floor of the embedded set-up that
#      RabbitMQ would not have.
#   3. the notifier's peak RSS (VmHWM) before SIGTERM, and that every email
#      was stored exactly once (the bench fails otherwise).
#   4. the baseline: `curl --url smtp://... --ssl-reqd --upload-file` run
#      EMAILS times one after another, then with xargs -P WORKERS, each
#      sending a copy of one of the notifier's emails (a new TCP connection,
#      TLS handshake and login each time, as an operator's script would do).
# The server is tests/smtp_sink.py (aiosmtpd, Python: one core at most; it
# fsyncs every message), on a free port with its own self-signed
# certificate; both sides share its limits, and its CPU use during the
# throughput phase is shown on stderr, beside the SMTP connections and
# logins the notifier needed. Prints one result line on stdout.
#   EMAILS (default 500), WORKERS (NOTIFIER_WORKERS and curl's -P, default
#   4), RATE (default 50 a second), LATENCY_SECONDS (default 10),
#   VID2MP3_BUILD (default build): where vid2mp3 and tests/notify_bench are.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${VID2MP3_BUILD:-build}
bin=$build/vid2mp3
helper=$build/tests/notify_bench
if [ ! -x "$bin" ] || [ ! -x "$helper" ]; then
  cmake -S . -B "$build" >/dev/null && cmake --build "$build" --target vid2mp3 notify_bench -j"$(nproc)" >/dev/null
fi
emails=${EMAILS:-500}
workers=${WORKERS:-4}
rate=${RATE:-50}
lat_secs=${LATENCY_SECONDS:-10}
lat_n=$((rate * lat_secs))
py=/usr/bin/python3 # the system's: aiosmtpd is a Debian package (python3-aiosmtpd)
# shellcheck source=bench/lib.sh
. bench/lib.sh

fail() {
  echo "bench/notify.sh: $*" >&2
  exit 1
}
for tool in curl openssl awk xargs; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
"$py" -c 'import aiosmtpd' 2>/dev/null || fail "$py has no aiosmtpd (apt-get install python3-aiosmtpd)"
if ! [ "$emails" -ge 1 ] || ! [ "$lat_n" -ge 1 ] || ! [ "$workers" -ge 1 ]; then
  fail "EMAILS, WORKERS, RATE and LATENCY_SECONDS must be positive numbers"
fi

dir=$(mktemp -d /tmp/vid2mp3-bench-XXXXXX)
sink_pid='' nt_pid=''
cleanup() {
  [ -n "$nt_pid" ] && stop_pid "$nt_pid"
  [ -n "$sink_pid" ] && stop_pid "$sink_pid"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ns() { date +%s%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
runid=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
events=$dir/spool/events.log
# stored_count REGEX: emails stored for recipients matching REGEX (whole address)
stored_count() {
  awk -v re="^($1)\$" '$2 == "stored" && $3 ~ re { n++ } END { print n + 0 }' "$events" 2>/dev/null || echo 0
}
# wait_stored REGEX COUNT SECONDS
wait_stored() {
  local deadline=$(($(date +%s) + $3)) got
  while :; do
    got=$(stored_count "$1")
    [ "$got" -ge "$2" ] && return 0
    kill -0 "$nt_pid" 2>/dev/null || fail "the notifier died; its log: $(tail -5 "$dir/notifier.log")"
    [ "$(date +%s)" -lt "$deadline" ] || fail "only $got of $2 emails stored for ^$1\$ within $3 s"
    sleep 0.1
  done
}

# ---------- the SMTP server: STARTTLS, AUTH after it, own port and cert ----------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 \
  || fail "openssl: $(cat "$dir/openssl.log")"
smtp_port=$(free_port)
smtp_user=bench-$runid
smtp_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
from=bench@vid2mp3.example
"$py" tests/smtp_sink.py --port "$smtp_port" --spool "$dir/spool" --tls-cert "$dir/cert.pem" \
  --tls-key "$dir/key.pem" --user "$smtp_user" --password "$smtp_password" \
  </dev/null >"$dir/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 1 100); do
  grep -q "ready on" "$dir/sink.log" && break
  kill -0 "$sink_pid" 2>/dev/null || fail "the SMTP sink did not start: $(tail -5 "$dir/sink.log")"
  sleep 0.1
done
grep -q "ready on" "$dir/sink.log" || fail "the SMTP sink did not come up in 10 s"

# ---------- the jobs (before the notifier runs: it only sees outcome messages) ----------
mkdir -p "$dir/data"
"$helper" make "$dir/data" "$emails" "$runid" >"$dir/burst.jobs"
"$helper" make "$dir/data" "$lat_n" "$runid-l" >"$dir/lat.jobs"
queue=bench-mp3-$runid

# ---------- the notifier ----------
metrics_port=$(free_port)
env -i PATH="$PATH" HOME="${HOME:-/tmp}" MONGOC_DISABLE_SHM=1 \
  DATA_DIR="$dir/data" MP3_QUEUE="$queue" METRICS_PORT="$metrics_port" \
  SMTP_URL="smtp://127.0.0.1:$smtp_port" SMTP_USER="$smtp_user" SMTP_PASSWORD="$smtp_password" \
  SMTP_CA_FILE="$dir/cert.pem" SMTP_TLS=required MAIL_FROM="$from" \
  PUBLIC_URL=https://mp3.bench.example/ NOTIFIER_WORKERS="$workers" \
  "$bin" notifier </dev/null >"$dir/notifier.log" 2>&1 &
nt_pid=$!
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "http://127.0.0.1:$metrics_port/healthz" 2>/dev/null && break
  kill -0 "$nt_pid" 2>/dev/null || fail "the notifier did not start: $(tail -5 "$dir/notifier.log")"
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$metrics_port/healthz" || fail "the notifier's /healthz did not answer in 15 s"

# 1. throughput: all outcomes at once
burst_re="u[0-9]+-$runid@bench[.]example"
sink_cpu0=$(cpu_ticks "$sink_pid")
nt_cpu0=$(cpu_ticks "$nt_pid")
burst_t0=$(now_ns)
"$helper" publish "$dir/data" "$queue" "$dir/burst.jobs" 0 >"$dir/burst.pub"
wait_stored "$burst_re" "$emails" $((60 + emails / 10))
burst_t1=$(now_ns)
sink_cpu1=$(cpu_ticks "$sink_pid")
nt_cpu1=$(cpu_ticks "$nt_pid")
read -r nt_rate burst_s < <(awk -v re="^($burst_re)\$" -v n="$emails" '
  FNR == NR { if (first == "" || $2 < first) first = $2; next }
  $2 == "stored" && $3 ~ re && $1 > last { last = $1 }
  END { s = (last - first) / 1e9; printf "%.1f %.2f\n", n / s, s }' "$dir/burst.pub" "$events")
cpu_pct() { # ticks before, after: % of one core over the burst
  awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v t0="$burst_t0" -v t1="$burst_t1" \
    'BEGIN { printf "%.0f", (b - a) / hz / ((t1 - t0) / 1e9) * 100 }'
}
echo "notify: burst of $emails emails in $burst_s s; CPU meanwhile: notifier $(cpu_pct "$nt_cpu0" "$nt_cpu1")%, SMTP sink $(cpu_pct "$sink_cpu0" "$sink_cpu1")% of a core ($(nproc) cores)" >&2

# 2. latency at a steady rate
lat_re="u[0-9]+-$runid-l@bench[.]example"
"$helper" publish "$dir/data" "$queue" "$dir/lat.jobs" "$rate" >"$dir/lat.pub"
wait_stored "$lat_re" "$lat_n" 60
awk -v re="^($lat_re)\$" 'FNR == NR { pub[$1] = $2; next }
  $2 == "stored" && $3 ~ re && ($3 in pub) { printf "%.3f\n", ($1 - pub[$3]) / 1e6 }' \
  "$dir/lat.pub" "$events" | sort -n >"$dir/lat.ms"
read -r p50 p99 lat_max < <(awk '{ v[NR] = $1 } END {
  i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
  printf "%.0f %.0f %.0f\n", v[i50], v[i99], v[NR] }' "$dir/lat.ms")

# 3. peak RSS, then a graceful stop (sends in progress finish first)
rss=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$nt_pid/status")
conns=$(awk '$2 == "connect" { n++ } END { print n + 0 }' "$events")
logins=$(awk '$2 == "auth" && $4 == "ok" { n++ } END { print n + 0 }' "$events")
outcomes=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" \
  | awk -F'[" ]' '/^vid2mp3_notifications_total/ && $NF != "0" { printf "%s%s %s", sep, $2, $NF; sep = ", " }')
kill -TERM "$nt_pid"
st=0
wait "$nt_pid" || st=$?
nt_pid=''
[ "$st" -eq 0 ] || fail "the notifier exited with status $st on SIGTERM: $(tail -5 "$dir/notifier.log")"
echo "notify: the notifier used $conns SMTP connections and $logins logins for $((emails + lat_n)) emails (outcomes: $outcomes); latency max $lat_max ms" >&2
# exactly once: every owner of both sets has one email, and nobody else got one
cut -d' ' -f2 "$dir/burst.jobs" "$dir/lat.jobs" >"$dir/owners"
once=$(awk 'FNR == NR { want[$1] = 1; next }
  $2 == "stored" { got[$3]++ }
  END {
    for (a in want) { if (got[a] == 0) missing++; else if (got[a] > 1) dup++ }
    for (a in got) if (!(a in want)) extra++
    printf "%d %d %d\n", missing, dup, extra }' "$dir/owners" "$events")
read -r missing dups extra <<<"$once"
[ "$((missing + dups + extra))" -eq 0 ] \
  || fail "not exactly once: $missing owners without their email, $dups with more than one, $extra unexpected recipients"

# 4. the curl command line, same server, a copy of one of the notifier's emails
sample=$(awk '$2 == "stored" { print $4; exit }' "$events")
cp "$sample" "$dir/msg.eml"
curl_args=(-sS --url "smtp://127.0.0.1:$smtp_port" --ssl-reqd --cacert "$dir/cert.pem"
  --user "$smtp_user:$smtp_password" --mail-from "$from" --upload-file "$dir/msg.eml")
t0=$(now_ns)
for i in $(seq 1 "$emails"); do
  curl "${curl_args[@]}" --mail-rcpt "c$i-$runid@bench.example" || fail "curl (serial) failed on email $i"
done
t1=$(now_ns)
curl_serial=$(awk -v n="$emails" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }')
seq 1 "$emails" | sed "s/.*/p&-$runid@bench.example/" >"$dir/rcpts"
t0=$(now_ns)
xargs -P "$workers" -I{} curl "${curl_args[@]}" --mail-rcpt {} <"$dir/rcpts" \
  || fail "curl -P$workers: some sends failed"
t1=$(now_ns)
curl_par=$(awk -v n="$emails" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }')
got_c=$(stored_count "c[0-9]+-$runid@bench[.]example")
got_p=$(stored_count "p[0-9]+-$runid@bench[.]example")
if [ "$got_c" -ne "$emails" ] || [ "$got_p" -ne "$emails" ]; then
  fail "curl: the server stored $got_c (serial) and $got_p (-P$workers) of $emails"
fi

ratio=$(awk -v a="$nt_rate" -v b="$curl_par" -v c="$curl_serial" 'BEGIN { printf "%.1fx vs -P'"$workers"', %.1fx vs serial", a / b, a / c }')
echo "notify: $emails emails of $(wc -c <"$dir/msg.eml") B  notifier ${nt_rate}/s ($workers workers)  curl CLI ${curl_serial}/s serial, ${curl_par}/s -P$workers  ratio $ratio  latency p50 $p50 ms p99 $p99 ms at $rate/s  RSS $rss MiB  exactly-once ok"
