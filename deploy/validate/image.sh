#!/usr/bin/env bash
# Builds deploy/Dockerfile without Docker and runs the image it makes:
#   deploy/validate/image.sh [--work DIR] [--no-negative]
#
# `docker build` carried out by hand, instruction by instruction, from the
# plan image-plan.mjs reads off the Dockerfile (it refuses instructions it
# does not understand):
# - FROM debian:bookworm-slim is a minbase bookworm from debootstrap, with
#   the slim image's dpkg and apt settings (cached as a tarball in DIR);
# - each RUN, COPY and WORKDIR makes a layer: an overlayfs upper directory
#   over the layers below, RUN in a chroot (as the stage's USER, with its
#   ENV, WORKDIR and the host's network), COPY from the context that
#   .dockerignore lets through or from an earlier stage, owned by root;
#   layers are cached under DIR by what made them, as Docker caches them;
# - the last stage is then run the way `docker run --read-only --tmpfs /tmp`
#   would: its layers mounted read-only, a tmpfs on /tmp, a fresh directory
#   on each VOLUME, in a network namespace of its own, as its USER, with its
#   ENV and WORKDIR. Checks: the root is read-only; `ldd` finds every
#   library; the CA bundle is there; ENTRYPOINT `version` prints the
#   project's version; ENTRYPOINT `convert` makes an MP3 of a test video;
#   ENTRYPOINT + CMD (`vid2mp3 all`) passes the HEALTHCHECK command and
#   `probe all --ready`, then exits 0 on SIGTERM.
# Then (unless --no-negative) two broken Dockerfiles must fail, with the
# layers they share with the real one taken from the cache: a build stage
# that leaves out a directory CMake needs, and an image whose service cannot
# start.
# Needs root (mount, chroot, ip netns), overlayfs, network access to
# deb.debian.org, node, ffmpeg on the host. Exit 0 when every check passes,
# 1 when one fails, 2 for a usage or setup error.
set -euo pipefail

me=image
usage() { echo "usage: $0 [--work DIR] [--no-negative]" >&2; exit 2; }
die() { echo "$me: $*" >&2; exit 2; }
work=/tmp/vid2mp3-image
negative=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --work) [ $# -ge 2 ] || usage; work=$2; shift 2 ;;
    --no-negative) negative=no; shift ;;
    *) usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, mount, chroot and ip netns need it)"
case "$work" in
  /*) ;;
  *) work=$(pwd)/$work ;;
esac
case "$work" in
  *[[:space:]:,]*) die "DIR must not contain whitespace, ':' or ',': $work" ;;
  / | /tmp | /tmp/) die "DIR must be a directory of its own, not $work" ;;
esac
for c in node ffmpeg ip unshare; do
  command -v "$c" >/dev/null 2>&1 || die "the host needs $c"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "the kernel has no overlayfs"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^project(vid2mp3 VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
suite=bookworm
mirror=http://deb.debian.org/debian
tarball=$work/minbase-$suite.tar
marker=$work/minbase-$suite.ok # written once the tarball is complete
layers=$work/layers            # KEY/diff (overlay upper), KEY/ok once made
mnt=$work/mnt                  # where a stage is mounted to change or run it
from=$work/from                # an earlier stage, for COPY --from
ctx=$work/context              # the files `docker build` would send
vol=$work/volumes              # the VOLUMEs of a run
used=$work/used                # the layers this run built or reused
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
netns=vid2mp3-image-$$

mounts_under() { # every mount point under $work, deepest first
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r
}
unmount_all() {
  local m
  for m in $(mounts_under); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "$me: cannot unmount $m" >&2
  done
}
kill_chrooted() { # every process left whose root is under $work
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$work"/*) kill -KILL "${p#/proc/}" 2>/dev/null || true ;; esac
  done
}
service_pid=
cleanup() {
  if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
    kill -KILL "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  kill_chrooted
  unmount_all
  ip netns del "$netns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work" "$layers"
unmount_all # what an interrupted run may have left
[ -z "$(mounts_under)" ] || die "something is still mounted under $work"
: >"$used"

# --- the base image: minbase bookworm, made like debian:bookworm-slim ------
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "$me: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } \
    || die "cannot install debootstrap"
fi
if [ ! -f "$marker" ] || [ ! -f "$tarball" ]; then
  t0=$(date +%s)
  rm -f "$marker" "$tarball"
  boot=$work/bootstrap
  rm -rf --one-file-system "$boot"
  echo "$me: debootstrap --variant=minbase $suite ($mirror)"
  debootstrap --variant=minbase "$suite" "$boot" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  # The sources and the dpkg/apt settings of the debian:bookworm-slim image
  # (debuerreotype): release, updates and security; no documentation; no
  # fsync; downloaded .debs and package caches deleted after each use.
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
  echo force-unsafe-io >"$boot/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  cat >"$boot/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$boot/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  : >"$boot/etc/resolv.conf" # Docker mounts the host's over it, as RUN does here
  rm -rf "$boot"/var/cache/apt/archives/*.deb "$boot"/var/lib/apt/lists/*
  tar --numeric-owner -C "$boot" -cf "$tarball" .
  rm -rf --one-file-system "$boot"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  echo "$me: base image made in $(($(date +%s) - t0))s"
fi
base=base-$(sha256sum "$marker" | cut -c1-16)
if [ ! -f "$layers/$base/ok" ]; then
  rm -rf --one-file-system "${layers:?}/$base"
  mkdir -p "$layers/$base/diff"
  tar --numeric-owner -C "$layers/$base/diff" -xpf "$tarball"
  touch "$layers/$base/ok"
fi

# --- the build: one stage after another -------------------------------------
# State of the stage being built: its layers (bottom first), ENV, WORKDIR,
# USER; and what the last stage says about running it.
stack=() env=() workdir=/ user=0:0
entrypoint=[] cmd=[] healthcheck='' volumes=()
declare -A stage_top   # stage name -> its layers, space-separated
made=0 reused=0

lowerdirs() { # the layers of $stack as an overlay lowerdir list, top first
  local i s=
  for ((i = ${#stack[@]} - 1; i >= 0; i--)); do s+="${s:+:}$layers/${stack[i]}/diff"; done
  echo "$s"
}
mount_layer() { # key: $mnt = $stack with a new upper layer KEY
  mkdir -p "$mnt" "$layers/$1/diff" "$layers/$1/work"
  mount -t overlay overlay -o "lowerdir=$(lowerdirs),upperdir=$layers/$1/diff,workdir=$layers/$1/work" "$mnt"
}
key_of() { # what made a layer -> its key: the layers below, the config, the step
  printf '%s\n' "${stack[*]}" "${env[*]}" "$workdir" "$user" "$@" | sha256sum | cut -c1-16
}
# Builds the layer KEY with the function and arguments that follow, unless
# the cache has it; a layer that fails is removed, never cached.
layer() {
  local key=$1 rc=0
  shift
  echo "$key" >>"$used"
  if [ -f "$layers/$key/ok" ]; then
    reused=$((reused + 1))
  else
    rm -rf --one-file-system "${layers:?}/$key"
    mount_layer "$key" || return 1
    "$@" || rc=$?
    unmount_all
    if [ "$rc" -ne 0 ]; then
      rm -rf --one-file-system "${layers:?}/$key"
      return "$rc"
    fi
    rm -rf "$layers/$key/work"
    touch "$layers/$key/ok"
    made=$((made + 1))
  fi
  stack+=("$key")
}
uid_of() { echo "${user%%:*}"; }
gid_of() { case "$user" in *:*) echo "${user#*:}" ;; *) echo 0 ;; esac; }
home_of() { # the home of uid $1 in the root $2, as Docker sets HOME
  local h
  h=$(awk -F: -v u="$1" '$3 == u { print $6; exit }' "$2/etc/passwd" 2>/dev/null)
  echo "${h:-/}"
}
# The environment of a process in the image: PATH unless ENV sets one, HOME
# for the user, then ENV.
image_env() { # root
  local e has_path=no
  for e in "${env[@]}"; do [ "${e%%=*}" != PATH ] || has_path=yes; done
  [ "$has_path" = yes ] || printf '%s\0' "PATH=$path"
  printf '%s\0' "HOME=$(home_of "$(uid_of)" "$1")" "HOSTNAME=vid2mp3-image"
  [ ${#env[@]} -eq 0 ] || printf '%s\0' "${env[@]}"
}
do_run() { # command, in $mnt
  local log=$work/run.log rc=0 ienv
  mount -t proc proc "$mnt/proc"
  mount --bind /dev "$mnt/dev"
  mount --bind /dev/pts "$mnt/dev/pts"
  [ -e "$mnt/etc/resolv.conf" ] || : >"$mnt/etc/resolv.conf"
  mount --bind /etc/resolv.conf "$mnt/etc/resolv.conf"
  mkdir -p "$mnt$workdir"
  mapfile -d '' -t ienv < <(image_env "$mnt")
  chroot --userspec="$(uid_of):$(gid_of)" "$mnt" /usr/bin/env -i -C "$workdir" "${ienv[@]}" \
    /bin/sh -c "$1" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$me: RUN ${1:0:100}... failed (exit $rc); its last lines:"
    tail -n 15 "$log" | sed 's/^/    /'
  fi
  return "$rc"
}
do_workdir() { mkdir -p "$mnt$workdir"; }
do_copy() { # source root, dest, sources...
  local root=$1 dest=$2 src t
  shift 2
  for src in "$@"; do
    [ -e "$root/$src" ] || { echo "$me: COPY $src: not found in ${root/#$ctx/the build context}"; return 1; }
    if [ -d "$root/$src" ]; then
      t=$mnt$dest
      mkdir -p "$t" && cp -a --no-preserve=ownership "$root/$src/." "$t/" || return 1
    else
      case "$dest" in
        */) t=$mnt$dest$(basename "$src") ;;
        *) t=$mnt$dest ;;
      esac
      mkdir -p "$(dirname "$t")" && cp -a --no-preserve=ownership "$root/$src" "$t" || return 1
    fi
  done
}
content_key() { # root sources...: what they hold
  local root=$1
  shift
  (cd "$root" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$@" 2>/dev/null) | sha256sum | cut -c1-16
}

# build DOCKERFILE: every stage; leaves the last one's state behind.
build() {
  local dockerfile=$1 plan=$work/plan line key name t0 tstage
  local -a step
  node "$here/image-plan.mjs" --context "$repo" "$dockerfile" >"$plan" || return 1
  rm -rf --one-file-system "$ctx"
  mkdir -p "$ctx"
  (cd "$repo" && grep $'^FILE\t' "$plan" | cut -f2 | tr '\n' '\0' | xargs -0 -r cp -a --parents -t "$ctx")
  name='' t0=$(date +%s)
  while IFS= read -r line; do
    IFS=$'\t' read -r -a step <<<"$line"
    case "${step[0]}" in
      FILE) ;;
      FROM)
        [ -z "$name" ] || { stage_top[$name]="${stack[*]}"; echo "$me: stage $name: ${#stack[@]} layers in $(($(date +%s) - tstage))s"; }
        [[ ${step[1]} == debian:bookworm-slim ]] || { echo "$me: FROM ${step[1]}: only debian:bookworm-slim can be made here"; return 1; }
        name=${step[2]} tstage=$(date +%s)
        stack=("$base") env=() workdir=/ user=0:0 entrypoint=[] cmd=[] healthcheck='' volumes=()
        ;;
      ENV) env+=("${step[1]}=${step[2]}") ;;
      USER) user=${step[1]} ;;
      VOLUME) volumes+=("${step[1]}") ;;
      ENTRYPOINT) entrypoint=${step[1]} ;;
      CMD) cmd=${step[1]} ;;
      HEALTHCHECK) healthcheck=${step[1]} ;;
      WORKDIR)
        workdir=${step[1]}
        layer "$(key_of WORKDIR)" do_workdir || return 1
        ;;
      RUN)
        echo "$me: stage $name: RUN ${step[1]:0:70}..."
        layer "$(key_of RUN "${step[1]}")" do_run "${step[1]}" || return 1
        ;;
      COPY)
        if [ "${step[1]}" = - ]; then
          key=$(key_of "${step[@]}" "$(content_key "$ctx" "${step[@]:3}")")
          layer "$key" do_copy "$ctx" "${step[2]}" "${step[@]:3}" || return 1
        else
          local -a saved=("${stack[@]}")
          read -r -a stack <<<"${stage_top[${step[1]}]}"
          mkdir -p "$from"
          mount -t overlay overlay -o "ro,lowerdir=$(lowerdirs)" "$from" || return 1
          stack=("${saved[@]}")
          key=$(key_of "${step[@]}" "${stage_top[${step[1]}]}")
          layer "$key" do_copy "$from" "${step[2]}" "${step[@]:3}" || return 1
          unmount_all
        fi
        ;;
      *) echo "$me: plan step ${step[0]} unknown"; return 1 ;;
    esac
  done <"$plan"
  echo "$me: stage $name: ${#stack[@]} layers in $(($(date +%s) - tstage))s"
  echo "$me: built in $(($(date +%s) - t0))s ($made layers made, $reused from the cache)"
}

# --- running the image --------------------------------------------------------
fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
json_words() { node -e 'for (const s of JSON.parse(process.argv[1])) process.stdout.write(s + "\0")' "$1"; }

# check_image: the last stage built, run as `docker run --read-only
# --tmpfs /tmp` would; sets $fails.
check_image() {
  local run=$work/run ienv ep cm v out i started healthy=no ready=no rc=0 waited
  local -a hc=()
  fails=0
  mkdir -p "$run"
  mount -t overlay overlay -o "ro,lowerdir=$(lowerdirs)" "$run" || { fail "cannot mount the image"; return; }
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$run/tmp"
  rm -rf --one-file-system "$vol"
  i=0
  for v in "${volumes[@]}"; do # a volume starts as what the image has there
    mkdir -p "$vol/$i"
    [ ! -d "$run$v" ] || { cp -a "$run$v/." "$vol/$i/"; chown --reference="$run$v" "$vol/$i"; chmod --reference="$run$v" "$vol/$i"; }
    mount --bind "$vol/$i" "$run$v"
    i=$((i + 1))
  done
  mount -t proc proc "$run/proc"
  mount --bind /dev "$run/dev"
  mount --bind /dev/pts "$run/dev/pts"
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$run/sys" 2>/dev/null \
    || { mount --bind /sys "$run/sys" && mount -o remount,bind,ro "$run/sys"; }
  mapfile -d '' -t ienv < <(image_env "$run")
  mapfile -d '' -t ep < <(json_words "$entrypoint")
  mapfile -d '' -t cm < <(json_words "$cmd")
  [ -z "$healthcheck" ] || mapfile -d '' -t hc < <(json_words "$healthcheck")
  [ ${#ep[@]} -gt 0 ] || { fail "the image has no ENTRYPOINT"; return; }
  as_user() { chroot --userspec="$(uid_of):$(gid_of)" "$run" /usr/bin/env -i -C "$workdir" "${ienv[@]}" "$@"; }
  in_netns() { ip netns exec "$netns" "$@"; }

  if touch "$run/.rw-test" 2>/dev/null; then
    rm -f "$run/.rw-test"
    fail "the root is not read-only"
  else
    ok "root read-only; /tmp a tmpfs; ${#volumes[@]} volume(s): ${volumes[*]}"
  fi
  if [ "$(uid_of)" != 0 ]; then
    ok "runs as uid $(uid_of) ($(awk -F: -v u="$(uid_of)" '$3 == u { print $1 }' "$run/etc/passwd"))"
  else
    fail "the image runs as root"
  fi
  local exe
  # shellcheck disable=SC2016 # $1 is the inner shell's
  exe=$(as_user sh -c 'command -v "$1"' sh "${ep[0]}" 2>/dev/null) || exe=''
  if [ -z "$exe" ]; then
    fail "ENTRYPOINT ${ep[0]} is not on the image's PATH"
  elif out=$(chroot "$run" /usr/bin/ldd "$exe" 2>&1) && ! grep -q 'not found' <<<"$out"; then
    ok "ldd $exe: all $(grep -c '=>' <<<"$out") libraries found"
  else
    fail "ldd $exe: $(grep 'not found' <<<"$out" | awk '{ print $1 }' | tr '\n' ' ')not found"
  fi
  if [ -s "$run/etc/ssl/certs/ca-certificates.crt" ]; then
    ok "CA bundle: $(grep -c 'BEGIN CERTIFICATE' "$run/etc/ssl/certs/ca-certificates.crt") certificates"
  else
    fail "no /etc/ssl/certs/ca-certificates.crt (SMTP over TLS and HTTPS cannot verify)"
  fi
  if out=$(as_user "${ep[@]}" version 2>&1) && grep -qF "$version" <<<"$out"; then
    ok "${ep[*]} version: $out"
  else
    fail "${ep[*]} version: want $version, got: $out"
  fi

  # A 3 s test video, made on the host.
  if ffmpeg -nostdin -hide_banner -loglevel error -y \
    -f lavfi -i testsrc=duration=3:size=320x240:rate=25 -f lavfi -i sine=frequency=440:duration=3 \
    -shortest -c:v libx264 -pix_fmt yuv420p -c:a aac "$run/tmp/in.mp4" 2>"$work/ffmpeg.log"; then
    if out=$(as_user "${ep[@]}" convert /tmp/in.mp4 /tmp/out.mp3 2>&1) && [ -s "$run/tmp/out.mp3" ]; then
      ok "${ep[*]} convert: $(stat -c %s "$run/tmp/out.mp3") bytes of MP3 from a 3 s video"
    else
      fail "${ep[*]} convert: $out"
    fi
  else
    fail "the host's ffmpeg cannot make the test video: $(tail -n 3 "$work/ffmpeg.log")"
  fi

  # The service, as the container starts it, in a network of its own.
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  # ip, chroot and env each exec the next: $! is the service itself
  ip netns exec "$netns" chroot --userspec="$(uid_of):$(gid_of)" "$run" /usr/bin/env -i -C "$workdir" "${ienv[@]}" \
    "${ep[@]}" "${cm[@]}" >"$work/service.log" 2>&1 &
  service_pid=$!
  started=$(date +%s)
  while [ $(($(date +%s) - started)) -lt 30 ] && kill -0 "$service_pid" 2>/dev/null; do
    if [ "$healthy" = no ] && [ ${#hc[@]} -gt 0 ] && in_netns chroot --userspec="$(uid_of):$(gid_of)" "$run" \
      /usr/bin/env -i -C "$workdir" "${ienv[@]}" "${hc[@]}" >/dev/null 2>&1; then
      healthy="$(($(date +%s) - started))s"
    fi
    if [ "$healthy" != no ] && in_netns chroot --userspec="$(uid_of):$(gid_of)" "$run" \
      /usr/bin/env -i -C "$workdir" "${ienv[@]}" "${ep[@]}" probe all --ready >/dev/null 2>&1; then
      ready="$(($(date +%s) - started))s"
      break
    fi
    sleep 0.5
  done
  waited="in 30 s"
  kill -0 "$service_pid" 2>/dev/null || waited="before ${ep[*]} ${cm[*]} exited"
  if [ ${#hc[@]} -eq 0 ]; then
    fail "the image has no HEALTHCHECK"
  elif [ "$healthy" != no ]; then
    ok "${ep[*]} ${cm[*]}: HEALTHCHECK (${hc[*]}) passed after $healthy"
  else
    fail "${ep[*]} ${cm[*]}: HEALTHCHECK (${hc[*]}) never passed $waited"
  fi
  if [ "$ready" != no ]; then
    ok "${ep[*]} ${cm[*]}: probe all --ready passed after $ready ($(awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$service_pid/status" 2>/dev/null) resident)"
  else
    fail "${ep[*]} ${cm[*]}: probe all --ready never passed $waited"
  fi
  if kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid"
    for _ in $(seq 1 60); do
      kill -0 "$service_pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -0 "$service_pid" 2>/dev/null && { fail "still running 15 s after SIGTERM"; kill -KILL "$service_pid"; }
  fi
  wait "$service_pid" || rc=$?
  service_pid=
  if [ "$rc" -eq 0 ]; then ok "exited 0 after SIGTERM"; else fail "exit status $rc"; fi
  [ "$fails" -eq 0 ] || { echo "--- the last lines of the service's log"; tail -n 15 "$work/service.log"; }
  ip netns del "$netns"
  kill_chrooted
  unmount_all
  local size=0 k
  for k in "${stack[@]}"; do size=$((size + $(du -smx "$layers/$k/diff" | cut -f1))); done
  echo "$me: image $size MiB in ${#stack[@]} layers"
}

build_and_check() { # dockerfile
  build "$1" || { echo "$me: the build failed"; return 1; }
  check_image
  [ "$fails" -eq 0 ]
}

echo "=== image: deploy/Dockerfile built and run without Docker"
status=0
build_and_check "$repo/deploy/Dockerfile" || status=1

failures=0
if [ "$negative" = yes ] && [ "$status" -eq 0 ]; then
  echo "=== image: broken Dockerfiles must fail"
  # reject DESCRIPTION EXPECTED PERL-EDIT: deploy/Dockerfile with the edit
  reject() {
    local d=$1 want=$2 broken=$work/Dockerfile.broken out
    perl -0pe "$3" "$repo/deploy/Dockerfile" >"$broken"
    if cmp -s "$broken" "$repo/deploy/Dockerfile"; then
      echo "FAIL  rejects $d: the edit changed nothing"; failures=$((failures + 1))
    elif out=$(build_and_check "$broken" 2>&1); then
      echo "FAIL  rejects $d: it built and passed"; failures=$((failures + 1))
    elif ! grep -qF -- "$want" <<<"$out"; then
      echo "FAIL  rejects $d: failed without saying \"$want\":"; printf '%s\n' "$out" | sed 's/^/      /'
      failures=$((failures + 1))
    else
      echo "ok    rejects $d"
    fi
  }
  reject "a build stage without web/ (the page CMake embeds)" "web/index.html" 's/^COPY web\/ web\/\n//m'
  reject "an image whose service cannot start (DATA_DIR not writable)" \
    "HEALTHCHECK (vid2mp3 probe) never passed" 's/DATA_DIR=\/var\/lib\/vid2mp3/DATA_DIR=\/srv\/vid2mp3/'
fi

# Layers no build of this run used are stale: drop them.
for d in "$layers"/*; do
  [ -d "$d" ] || continue
  [ "$(basename "$d")" = "$base" ] || grep -qx "$(basename "$d")" "$used" || rm -rf --one-file-system "$d"
done
if [ "$status" -ne 0 ] || [ "$failures" -ne 0 ]; then
  echo "=== image: FAIL"
  exit 1
fi
if [ "$negative" = yes ]; then
  echo "=== image: deploy/Dockerfile builds and runs; each broken one fails"
else
  echo "=== image: deploy/Dockerfile builds and runs (broken ones not tried: --no-negative)"
fi
