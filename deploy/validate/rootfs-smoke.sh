#!/usr/bin/env bash
# The image's runtime stage is complete, proved without Docker:
#   deploy/validate/rootfs-smoke.sh PATH/TO/vid2mp3 [WORKDIR]
# Bootstraps a minbase Debian bookworm (cached in WORKDIR as a pristine
# tarball, default /tmp/vid2mp3-rootfs-smoke), installs on a fresh copy of it
# exactly the packages of `scripts/install-deps.sh --list runtime` (what
# deploy/Dockerfile's last stage installs), adds user 10001 and the binary
# the way the Dockerfile does, then, with that root mounted read-only (as
# `docker run --read-only --tmpfs /tmp -v DATA:/var/lib/vid2mp3` would), runs
# as uid 10001: `vid2mp3 version`, `convert` of a short video made with the
# host's ffmpeg, and `all` with `probe` and `probe all --ready` until it is
# ready, then SIGTERM (exit 0 expected). Needs root, mount, network access to
# deb.debian.org, ffmpeg and python3 (or ss) on the host. Exit 0 when every
# check passes, 1 when one fails, 2 for a usage or setup error.
set -euo pipefail

me=rootfs-smoke
usage() { echo "usage: $0 PATH/TO/vid2mp3 [WORKDIR]" >&2; exit 2; }
die() { echo "$me: $*" >&2; exit 2; }
{ [ $# -ge 1 ] && [ $# -le 2 ]; } || usage
{ [ -x "$1" ] && [ -f "$1" ]; } || die "$1 is not an executable file"
bin=$(readlink -f "$1")
work=${2:-/tmp/vid2mp3-rootfs-smoke}
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and mount need it)"
case "$work" in
  /*) ;;
  *) work=$(pwd)/$work ;;
esac
case "$work" in
  *[[:space:]]*) die "WORKDIR must not contain whitespace: $work" ;;
  / | /tmp | /tmp/) die "WORKDIR must be a directory of its own, not $work" ;;
esac
command -v ffmpeg >/dev/null 2>&1 || die "the host needs ffmpeg to make the test video"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mapfile -t pkgs < <("$repo/scripts/install-deps.sh" --list runtime | grep -v '^[[:space:]]*$')
[ ${#pkgs[@]} -gt 0 ] || die "scripts/install-deps.sh --list runtime printed nothing"

suite=bookworm
mirror=http://deb.debian.org/debian
tarball=$work/minbase-$suite.tar
marker=$work/minbase-$suite.ok # written once the tarball is complete
root=$work/root                # minbase + the runtime packages + user + binary
run=$work/run                  # root, bound read-only, where the checks run
debs=$work/debs                # downloaded .debs kept between runs
uid=10001
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

fails=0
all_pid=
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# Every mount point under $work, deepest first.
mounts_under() {
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r
}
unmount_all() {
  local m
  for m in $(mounts_under); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "$me: cannot unmount $m" >&2
  done
}
cleanup() {
  if [ -n "$all_pid" ] && kill -0 "$all_pid" 2>/dev/null; then
    kill -KILL "$all_pid" 2>/dev/null || true
    wait "$all_pid" 2>/dev/null || true
  fi
  unmount_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work" "$debs"
unmount_all # what an interrupted run may have left
[ -z "$(mounts_under)" ] || die "something is still mounted under $work"

# --- 1. debootstrap ---------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "$me: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } \
    || die "cannot install debootstrap"
fi

# --- 2. the pristine minbase, cached ------------------------------------------
t0=$(date +%s)
if [ -f "$marker" ] && [ -f "$tarball" ]; then
  bootstrap="cached"
  echo "$me: reusing the minbase $suite of $(cat "$marker")"
else
  rm -f "$marker" "$tarball"
  boot=$work/bootstrap
  rm -rf --one-file-system "$boot"
  echo "$me: debootstrap --variant=minbase $suite ($mirror)"
  debootstrap --variant=minbase "$suite" "$boot" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  # The sources of the debian:bookworm images: the release, its updates and
  # the security archive.
  rm -f "$boot/etc/apt/sources.list"
  cat >"$boot/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$boot"/var/cache/apt/archives/*.deb "$boot"/var/lib/apt/lists/*
  tar --numeric-owner -C "$boot" -cf "$tarball" .
  rm -rf --one-file-system "$boot"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  bootstrap="$(($(date +%s) - t0))s"
fi

# --- 3. the image: minbase + the runtime list + user 10001 + the binary -----
t1=$(date +%s)
rm -rf --one-file-system "$root"
mkdir -p "$root"
tar --numeric-owner -C "$root" -xpf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# As in the debian images (/etc/dpkg/dpkg.cfg.d/docker-apt-speedup).
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
installed() { chroot "$root" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii'; }
base_count=$(installed)
shopt -s nullglob
cached=("$debs"/*.deb)
[ ${#cached[@]} -eq 0 ] || cp "${cached[@]}" "$root/var/cache/apt/archives/"
shopt -u nullglob

mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
echo "$me: apt-get install ${pkgs[*]}"
if ! chroot "$root" /usr/bin/env -i PATH="$path" HOME=/root DEBIAN_FRONTEND=noninteractive LC_ALL=C \
  sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' sh "${pkgs[@]}" \
  >"$work/install.log" 2>&1; then
  tail -n 20 "$work/install.log" >&2
  die "apt-get install failed (log: $work/install.log)"
fi
# (useradd warns that 10001 is above SYS_UID_MAX, as in the docker build)
chroot "$root" /usr/bin/env -i PATH="$path" sh -eu -c "
  groupadd --system --gid $uid vid2mp3
  useradd --system --uid $uid --gid vid2mp3 --home-dir /var/lib/vid2mp3 --shell /usr/sbin/nologin vid2mp3
  install -d -o vid2mp3 -g vid2mp3 -m 0750 /var/lib/vid2mp3" >>"$work/install.log" 2>&1 \
  || { tail -n 5 "$work/install.log" >&2; die "cannot add user $uid as the Dockerfile does"; }
unmount_all
all_count=$(installed)
# The debian images delete downloaded .debs (docker-clean) and the Dockerfile
# the apt lists; keep the .debs here for the next run instead.
find "$root/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec mv -f -t "$debs" {} +
rm -rf "$root"/var/lib/apt/lists/*
# The Dockerfile copies `strip --strip-debug` of the build.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$root/usr/local/bin/vid2mp3" "$bin"
  chmod 0755 "$root/usr/local/bin/vid2mp3"
else
  install -m 0755 "$bin" "$root/usr/local/bin/vid2mp3"
fi
size_mib=$(du -smx "$root" | cut -f1)
install_s=$(($(date +%s) - t1))
echo "$me: installed ${#pkgs[@]} packages (+$((all_count - base_count - ${#pkgs[@]})) dependencies) on $base_count of minbase in ${install_s}s"

# --- 4. the checks, on the root mounted read-only -----------------------------
mkdir -p "$run"
mount --bind "$root" "$run"
mount -o remount,bind,ro "$run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$run/tmp"
mount --bind "$root/var/lib/vid2mp3" "$run/var/lib/vid2mp3"
mount -t proc proc "$run/proc"
mount --bind /dev "$run/dev"
mount --bind /dev/pts "$run/dev/pts"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$run/sys" 2>/dev/null \
  || { mount --bind /sys "$run/sys" && mount -o remount,bind,ro "$run/sys"; }

# In the image as 10001:10001 with only the image's environment (+ envs);
# chroot and env exec, so a command started in the background is $!.
user=(chroot --userspec="$uid:$uid" --groups="$uid" "$run" /usr/bin/env -i -C /var/lib/vid2mp3
  PATH="$path" HOME=/var/lib/vid2mp3 TMPDIR=/tmp DATA_DIR=/var/lib/vid2mp3 MONGOC_DISABLE_SHM=1)
envs=()
as_user() { "${user[@]}" "${envs[@]}" "$@"; }

# The Dockerfile's runtime stage installs the same list.
mapfile -t docker_pkgs < <(awk '
  /^FROM / { n = 0; delete p }
  /--no-install-recommends/ { on = 1; sub(/.*--no-install-recommends/, "") }
  on { for (i = 1; i <= NF; i++) { if ($i == "&&") { on = 0; break } if ($i != "\\") p[++n] = $i } }
  END { for (i = 1; i <= n; i++) print p[i] }' "$repo/deploy/Dockerfile" | sort -u)
if [ "$(printf '%s\n' "${docker_pkgs[@]}")" = "$(printf '%s\n' "${pkgs[@]}" | sort -u)" ]; then
  ok "deploy/Dockerfile's runtime stage installs the same ${#pkgs[@]} packages"
else
  fail "deploy/Dockerfile's runtime stage installs ${docker_pkgs[*]:-nothing}, not ${pkgs[*]}"
fi

if touch "$run/.rw-test" 2>/dev/null; then
  rm -f "$run/.rw-test"
  fail "the root is not read-only"
else
  ok "root read-only; /tmp a tmpfs, /var/lib/vid2mp3 writable"
fi

if out=$(chroot "$run" /usr/bin/ldd /usr/local/bin/vid2mp3 2>&1); then
  if grep -q 'not found' <<<"$out"; then
    fail "ldd: $(grep 'not found' <<<"$out" | awk '{ print $1 }' | tr '\n' ' ')not found"
  else
    ok "ldd: all $(grep -c '=>' <<<"$out") libraries found"
  fi
else
  fail "ldd: $out"
fi

if [ -s "$run/etc/ssl/certs/ca-certificates.crt" ]; then
  ok "CA bundle: /etc/ssl/certs/ca-certificates.crt ($(grep -c 'BEGIN CERTIFICATE' "$run/etc/ssl/certs/ca-certificates.crt") certificates)"
else
  fail "CA bundle: no /etc/ssl/certs/ca-certificates.crt (SMTP over TLS and HTTPS cannot verify)"
fi

if [ "$(chroot "$run" getent passwd "$uid" | cut -d: -f1,3,4,6,7)" = "vid2mp3:$uid:$uid:/var/lib/vid2mp3:/usr/sbin/nologin" ]; then
  ok "user: vid2mp3 $uid:$uid, home /var/lib/vid2mp3"
else
  fail "user: $(chroot "$run" getent passwd "$uid" || echo "no uid $uid")"
fi

if out=$(as_user vid2mp3 version 2>&1); then
  ok "version as uid $uid: $out"
else
  fail "version as uid $uid: $out"
fi

# A 3 s test video, made on the host.
if ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i testsrc=duration=3:size=320x240:rate=25 -f lavfi -i sine=frequency=440:duration=3 \
  -shortest -c:v libx264 -pix_fmt yuv420p -c:a aac "$work/in.mp4" 2>"$work/ffmpeg.log" \
  || ffmpeg -nostdin -hide_banner -loglevel error -y \
    -f lavfi -i testsrc=duration=3:size=320x240:rate=25 -f lavfi -i sine=frequency=440:duration=3 \
    -shortest -c:v mpeg4 -c:a aac "$work/in.mp4" 2>"$work/ffmpeg.log"; then
  install -m 0644 "$work/in.mp4" "$run/tmp/in.mp4"
  if out=$(as_user vid2mp3 convert /tmp/in.mp4 /tmp/out.mp3 2>&1); then
    mp3=$run/tmp/out.mp3
    magic=$(od -An -tx1 -N3 "$mp3" 2>/dev/null | tr -d ' \n')
    if [ -s "$mp3" ] && { [ "$magic" = 494433 ] || [[ $magic == ff[ef]* ]]; }; then
      ok "convert as uid $uid: $(stat -c %s "$mp3") bytes of MP3 (starts $magic)"
    else
      fail "convert as uid $uid: /tmp/out.mp3 is not an MP3 (size $(stat -c %s "$mp3" 2>/dev/null || echo 0), starts '$magic')"
    fi
  else
    fail "convert as uid $uid: $out"
  fi
else
  fail "convert: the host's ffmpeg cannot make the test video: $(tail -n 3 "$work/ffmpeg.log")"
fi

# Two free loopback ports.
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'
  else
    local used p picked=()
    used=$(ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u)
    while [ ${#picked[@]} -lt 2 ]; do
      p=$((20000 + RANDOM % 30000))
      grep -qx "$p" <<<"$used" || [[ " ${picked[*]} " == *" $p "* ]] || picked+=("$p")
    done
    echo "${picked[@]}"
  fi
}
read -r auth_port gateway_port < <(free_ports)
envs=(AUTH_PORT="$auth_port" GATEWAY_PORT="$gateway_port" BIND_ADDRESS=127.0.0.1)
"${user[@]}" "${envs[@]}" vid2mp3 all >"$work/all.log" 2>&1 &
all_pid=$!
started=$(date +%s)
healthy=no ready=no
while [ $(($(date +%s) - started)) -lt 20 ] && kill -0 "$all_pid" 2>/dev/null; do
  if [ "$healthy" = no ] && as_user vid2mp3 probe >/dev/null 2>&1; then
    healthy="$(($(date +%s) - started))s"
  fi
  if [ "$healthy" != no ] && as_user vid2mp3 probe all --ready >/dev/null 2>&1; then
    ready="$(($(date +%s) - started))s"
    break
  fi
  sleep 0.5
done
waited="in 20 s"
kill -0 "$all_pid" 2>/dev/null || waited="before \`vid2mp3 all\` exited"
if [ "$healthy" != no ]; then
  ok "all as uid $uid (auth :$auth_port, gateway :$gateway_port): probe answered after $healthy"
else
  fail "all as uid $uid: probe never answered 200 $waited: $(as_user vid2mp3 probe 2>&1 | tail -n 1)"
fi
if [ "$ready" != no ]; then
  ok "all as uid $uid: probe all --ready answered after $ready"
else
  fail "all as uid $uid: probe all --ready never answered 200 $waited: $(as_user vid2mp3 probe all --ready 2>&1 | tail -n 1)"
fi
if kill -0 "$all_pid" 2>/dev/null; then
  kill -TERM "$all_pid"
  for _ in $(seq 1 60); do
    kill -0 "$all_pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$all_pid" 2>/dev/null; then
    fail "all: still running 15 s after SIGTERM"
    kill -KILL "$all_pid" 2>/dev/null || true
  fi
fi
rc=0
wait "$all_pid" || rc=$?
all_pid=
if [ "$rc" -eq 0 ]; then
  ok "all: exited 0 after SIGTERM"
else
  fail "all: exit status $rc (log: $work/all.log)"
fi
[ "$fails" -eq 0 ] || { echo "--- the last lines of $work/all.log"; tail -n 15 "$work/all.log"; }

# --- 5. summary ---------------------------------------------------------------
unmount_all
status=ok
[ "$fails" -eq 0 ] || status="FAIL ($fails checks failed)"
echo "$me: the runtime packages (${#pkgs[@]}) run vid2mp3 as uid $uid: $status" \
  "(bootstrap $bootstrap, install ${install_s}s, image size $size_mib MiB)"
[ "$fails" -eq 0 ]
