#!/usr/bin/env bash
# `make test-arm64`: the install a Raspberry Pi owner does, on an emulated 64-bit Pi OS.
#
# Builds (once; cached under .cache/arm64/, keyed on the hash of build-root.sh and the mirror)
# a Debian 12 bookworm arm64 root with debootstrap, runs it under qemu-user-static (binfmt),
# copies this checkout into it and, inside it (chroot):
#   1. deploy/install.sh --prefix /srv/pw --no-systemd, as root, as a Pi owner would;
#   2. printer-watchdog check-config on config.example.yaml and on the installed config;
#   3. printer-watchdog demo: the simulated print is paused, alert.json and heatmap.jpg written;
#   4. printer-watchdog score on the bundled demo frames: the scores must equal the x86 run's
#      (this host's .venv) within tests/arm64/compare_scores.py's tolerance;
#   5. `python -c "import tensorflow"` in the installed virtualenv must fail.
# Then checks that deploy/install.sh refuses a 32-bit (armhf) userland in one line.
#
# Needs root (debootstrap, chroot, mounts) and network access to a Debian mirror and PyPI,
# reached the way this host reaches them (apt sources, pip configuration, CA bundle, proxy).
# Emulated timings say nothing about a Pi's speed: nothing here is timed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
HOST_PY="${HOST_PY:-$REPO/.venv/bin/python}"
ARCH=arm64
CACHE="$REPO/.cache/arm64"
PREFIX=/srv/pw              # inside the root
SRC=/home/pi/printer-watchdog

say() { printf '%s\n' "test-arm64: $*"; }
die() { printf '%s\n' "test-arm64: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts); run it as root or in CI"
T0=$SECONDS

# ----------------------------------------------------------------------------- host tools
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# binfmt: the kernel must hand aarch64 ELF files to qemu. In a container /proc/sys/fs/binfmt_misc
# is often not mounted; the entry uses the F flag (interpreter opened at registration), so the
# root needs no copy of qemu.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    die "cannot mount binfmt_misc (a container without the right to?); aarch64 binaries cannot run here"
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "binfmt entry qemu-aarch64 is not enabled"

# ----------------------------------------------------------------------------- the root (cached)
# The Debian mirror apt uses on this host (deb822 sources or a classic sources.list).
mirror="${ARM64_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2; exit}')"
  [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $0 ~ /debian/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  case "$mirror" in *security*|"") mirror=http://deb.debian.org/debian ;; esac
fi
key="$(printf '%s\n%s\n%s\n' "$ARCH" "$mirror" "$(cat "$HERE/build-root.sh")" | sha256sum | cut -c1-16)"
ROOT="$CACHE/root-$key"
if [ -f "$ROOT/.complete" ]; then
  say "reusing the cached $ARCH root $ROOT"
else
  say "building a bookworm $ARCH root in $ROOT from $mirror (a few minutes, once per change of build-root.sh)"
  # Roots of an older key are rebuilt, not kept: they are 0.5 GB each.
  rm -rf "$CACHE"/root-* "$CACHE"/armhf-*
  mkdir -p "$CACHE"
  t=$SECONDS
  bash "$HERE/build-root.sh" "$ARCH" "$ROOT" "$mirror" >"$CACHE/build-root.log" 2>&1 ||
    { tail -20 "$CACHE/build-root.log" >&2; die "debootstrap failed (log: $CACHE/build-root.log)"; }
  touch "$ROOT/.complete"
  say "root built in $((SECONDS - t)) s ($(du -sh "$ROOT" | cut -f1))"
fi

# ----------------------------------------------------------------------------- network as here
# Name resolution, the CA bundle (a proxy's CA included), pip's configuration and proxy
# variables: the root reaches Debian and PyPI as this host does.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ ! -f /etc/ssl/certs/ca-certificates.crt ] || cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
rm -f "$ROOT/etc/pip.conf"
[ ! -f /etc/pip.conf ] || cp -L /etc/pip.conf "$ROOT/etc/pip.conf"
if [ -d /etc/xdg/pip ]; then rm -rf "$ROOT/etc/xdg/pip"; mkdir -p "$ROOT/etc/xdg"; cp -rL /etc/xdg/pip "$ROOT/etc/xdg/pip"; fi
passenv=()
for var in $(env | sed -n 's/^\(PIP_[A-Z_]*\|[Hh][Tt][Tt][Pp][Ss]*_[Pp][Rr][Oo][Xx][Yy]\|[Nn][Oo]_[Pp][Rr][Oo][Xx][Yy]\|REQUESTS_CA_BUNDLE\|SSL_CERT_FILE\)=.*/\1/p'); do
  # This host's wheel folders and file:// indexes hold x86 wheels and are not in the root.
  case "${!var}" in file:*) continue ;; /*) [ -e "$ROOT${!var}" ] || continue ;; esac
  passenv+=("$var=${!var}")
done

# ----------------------------------------------------------------------------- the checkout
rm -rf "$ROOT$SRC" "$ROOT$PREFIX" "$ROOT/tmp/pw"
mkdir -p "$ROOT$SRC" "$ROOT/tmp/pw"
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build --exclude=./dist \
  --exclude=./runs --exclude=./research --exclude='*.egg-info' --exclude=__pycache__ \
  --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$ROOT$SRC" -xf -

# ----------------------------------------------------------------------------- inside the Pi
# A private mount namespace: /proc and /dev in the root vanish with this process. No /sys on
# purpose: under qemu-user it lists the x86 host's CPUs while /proc/cpuinfo has no ARM fields,
# and XNNPACK's CPU detection then crashes the TFLite runtime (SIGSEGV in allocate_tensors);
# without /sys it falls back to its defaults. A real Pi describes its ARM CPU in both.
say "running the install and the checks inside the emulated $ARCH system"
t=$SECONDS
unshare --mount --propagation private bash -euo pipefail -c '
  ROOT="$1"; shift
  mount -t proc proc "$ROOT/proc"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs tmpfs "$ROOT/dev/shm" 2>/dev/null || true
  exec chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" \
    bash -euo pipefail /home/pi/printer-watchdog/tests/arm64/inside.sh
' _ "$ROOT" ${passenv[@]+"${passenv[@]}"} | sed -u 's/^/  [arm64] /'
say "inside: $((SECONDS - t)) s"

# ----------------------------------------------------------------------------- x86 against arm64
[ -x "$HOST_PY" ] || die "$HOST_PY missing: run 'make test-arm64' (it creates .venv first)"
(cd "$REPO" && PYTHONPATH="$REPO" "$HOST_PY" -m watchdog score watchdog/demo/frames/*.jpg) >"$ROOT/tmp/pw/scores-x86.jsonl"
PYTHONPATH="$REPO" "$HOST_PY" "$HERE/compare_scores.py" "$ROOT/tmp/pw/scores-x86.jsonl" "$ROOT/tmp/pw/scores-arm64.jsonl"

# ----------------------------------------------------------------------------- 32-bit refused
# The refusal comes before any download, so faking the userland's architecture on this host
# tests the very branch a 32-bit Pi OS takes (see tests/arm64/armhf.sh for why not a root).
bash "$HERE/armhf.sh"

say "passed in $((SECONDS - T0)) s"
