#!/usr/bin/env bash
# Builds a minimal Debian 12 (bookworm) root for another CPU (default arm64), the userland of
# a Raspberry Pi OS 64-bit, with debootstrap. Run on the host as root, with binfmt set up
# (tests/arm64/run.sh does both). This file is part of the cache key: editing it rebuilds.
#   build-root.sh ARCH ROOT MIRROR
set -euo pipefail
ARCH="$1"
ROOT="$2"
MIRROR="$3"
# What Raspberry Pi OS Lite ships that the installer relies on: python3 with venv and pip, CA
# certificates for PyPI. Nothing else: the installer must bring what it needs.
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
rm -rf "$ROOT"
mkdir -p "$ROOT"
debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" bookworm "$ROOT" "$MIRROR"
# A plain user's first folder; pip's wheel cache stays here between runs of the cached root.
mkdir -p "$ROOT/home/pi" "$ROOT/root/.cache/pip"
