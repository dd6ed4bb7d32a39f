#!/usr/bin/env bash
# deploy/install.sh on a 32-bit (armhf) Raspberry Pi OS: one line that says it is unsupported,
# a non-zero exit, and nothing installed.
#
# The userland's architecture is faked with PRINTER_WATCHDOG_TEST_ARCH (what `dpkg
# --print-architecture` prints on a 32-bit Pi OS), not taken from an armhf root: the refusal
# comes first, before Python, pip or any download, so the only thing a real armhf root would add
# is dpkg printing "armhf", at the price of a second debootstrap (minutes, 0.3 GB) in every
# fresh CI run. The same script also checks the names a 32-bit userland may report elsewhere.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fail() { printf '%s\n' "test-arm64: armhf: FAILED: $*" >&2; exit 1; }

for arch in armhf armel armv7l i386; do
  prefix="$(mktemp -d)"
  set +e
  out="$(PRINTER_WATCHDOG_TEST_ARCH=$arch bash "$REPO/deploy/install.sh" --prefix "$prefix" --no-systemd 2>&1)"
  rc=$?
  set -e
  [ "$rc" != 0 ] || fail "$arch: install.sh exited 0"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$arch: expected one line, got: $out"
  case "$out" in *"32-bit system ($arch)"*"64-bit OS"*) ;; *) fail "$arch: unexpected message: $out" ;; esac
  [ -z "$(ls -A "$prefix")" ] || fail "$arch: install.sh left files in $prefix: $(ls -A "$prefix")"
  rmdir "$prefix"
done
printf '%s\n' "test-arm64: armhf: refused in one line: $out"
