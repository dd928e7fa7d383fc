#!/usr/bin/env bash
# The image's runtime packages are what the binary needs:
#   deploy/validate/packages.sh RUNTIME_LIST BINARY
# RUNTIME_LIST (`scripts/install-deps.sh --list runtime`) must hold exactly
# the Debian packages that own the shared libraries BINARY names as NEEDED
# (its direct dependencies; apt brings theirs), plus ca-certificates, minus
# libc6, which every Debian image has. Run on the machine that built BINARY.
set -euo pipefail
list=$1 bin=$2
[ -x "$bin" ] || { echo "packages: $bin is not an executable" >&2; exit 2; }

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "packages: $bin names no shared library" >&2; exit 1; }
want=(ca-certificates)
for soname in $needed; do
  # awk reads to the end: leaving early would kill ldconfig with SIGPIPE,
  # which pipefail turns into a silent exit of this script
  path=$(ldconfig -p | awk -v s="$soname" '!p && $1 == s && /x86-64|x86_64|AArch64/ { p = $NF } END { print p }')
  [ -n "$path" ] || { echo "packages: no $soname on this machine" >&2; exit 1; }
  real=$(readlink -f "$path")
  # with merged /usr, dpkg may know the file under /lib rather than /usr/lib
  owner=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true)
  pkg=${owner%%:*}
  [ -n "$pkg" ] || { echo "packages: no package owns $real ($soname)" >&2; exit 1; }
  [ "$pkg" = libc6 ] || want+=("$pkg")
done

mapfile -t have < <(grep -v '^$' "$list" | sort -u)
mapfile -t need < <(printf '%s\n' "${want[@]}" | sort -u)
missing=$(comm -13 <(printf '%s\n' "${have[@]}") <(printf '%s\n' "${need[@]}"))
extra=$(comm -23 <(printf '%s\n' "${have[@]}") <(printf '%s\n' "${need[@]}"))
rc=0
[ -z "$missing" ] || { echo "packages: the runtime list lacks what $bin links: ${missing//$'\n'/ }"; rc=1; }
[ -z "$extra" ] || { echo "packages: the runtime list has what $bin does not link: ${extra//$'\n'/ }"; rc=1; }
[ "$rc" -ne 0 ] || echo "packages: the ${#have[@]} runtime packages are exactly what $bin links (+ ca-certificates)"
exit "$rc"
