#!/usr/bin/env bash
# Installs printer-watchdog as a systemd service (Raspberry Pi OS Bookworm, Debian 12, or any
# systemd Linux with Python >= 3.11). Safe to run again: it upgrades the code in the virtualenv
# and never overwrites the config or the secret files. See docs/deploy.md.
set -euo pipefail

NAME=printer-watchdog
SERVICE_USER=printer-watchdog
SECRET_FILES=(octoprint.key moonraker.key mqtt.password)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
Usage: sudo deploy/install.sh [OPTIONS]

Installs printer-watchdog from this checkout ($REPO):
  - the system user '$SERVICE_USER' (group video, for /dev/video*; no login, no home)
  - a virtualenv in /opt/$NAME/venv with Apprise (phone notifications) and the lite runtime (ai-edge-litert, or
    tflite-runtime with numpy<2 where ai-edge-litert has no wheel); never TensorFlow
  - /etc/$NAME/config.yaml from config.example.yaml, only if absent
  - empty secret files in /etc/$NAME (${SECRET_FILES[*]}), mode 0600, only if absent
  - /var/lib/$NAME (incidents, collected frames, queued alerts, saved settings, models)
  - the unit $NAME.service: enabled and started on the first run; a re-run first checks the
    config with the new version (and changes nothing if it is refused), then restarts the
    service if it was running (or had failed)

Options:
  --uninstall        stop and remove the service, the virtualenv and the unit; keep
                     /etc/$NAME (config, secrets) and /var/lib/$NAME (incidents)
  --purge            like --uninstall, and also delete config, secrets, incidents, collected
                     frames, models trained on the Pi and the user
  --prefix DIR       install everything under DIR (a fake root, for tests); implies
                     --no-systemd, so nothing outside DIR is touched
  --no-systemd       do not create the user or call systemctl (containers, tests)
  --python PY        interpreter for the virtualenv (default: python3.11, else python3 >= 3.11)
  --runtime R        auto (default), litert (ai-edge-litert) or tflite (tflite-runtime, numpy<2)
  --pip-args ARGS    extra options for pip, one quoted string,
                     e.g. --pip-args "--no-index --find-links /srv/wheels"
  -h, --help         this text
EOF
}

say() { printf '%s\n' "install.sh: $*"; }
die() { printf '%s\n' "install.sh: error: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------- arguments
PREFIX=""
ACTION=install
SYSTEMD=1
PYTHON=""
RUNTIME=auto
PIP_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --uninstall) ACTION=uninstall ;;
    --purge) ACTION=purge ;;
    --no-systemd) SYSTEMD=0 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX="$2"; shift
      # an empty one (an unset variable: --prefix "$TESTROOT") would mean the real system
      [ -n "$PREFIX" ] || die "--prefix needs a folder, got an empty one" ;;
    --prefix=*) PREFIX="${1#*=}"; [ -n "$PREFIX" ] || die "--prefix needs a folder, got an empty one" ;;
    --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PYTHON="$2"; shift ;;
    --python=*) PYTHON="${1#*=}" ;;
    --runtime) [ $# -ge 2 ] || die "--runtime needs auto, litert or tflite"; RUNTIME="$2"; shift ;;
    --runtime=*) RUNTIME="${1#*=}" ;;
    --pip-args) [ $# -ge 2 ] || die "--pip-args needs a quoted string"; read -r -a PIP_ARGS <<<"$2"; shift ;;
    --pip-args=*) read -r -a PIP_ARGS <<<"${1#*=}" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
case "$RUNTIME" in auto|litert|tflite) ;; *) die "--runtime must be auto, litert or tflite, not '$RUNTIME'" ;; esac
if [ -n "$PREFIX" ]; then
  SYSTEMD=0
  mkdir -p "$PREFIX"
  PREFIX="$(cd "$PREFIX" && pwd)"
  [ "$PREFIX" != / ] || PREFIX=""
  # the paths land in the unit's ExecStart= and in sed expressions: plain characters only
  case "$PREFIX" in
    *[!A-Za-z0-9/._+-]*) die "--prefix '$PREFIX' holds a space or a sign other than . _ + -; use a folder with a plain name" ;;
  esac
fi

OPT="$PREFIX/opt/$NAME"
VENV="$OPT/venv"
ETC="$PREFIX/etc/$NAME"
STATE="$PREFIX/var/lib/$NAME"
UNIT="$PREFIX/etc/systemd/system/$NAME.service"
BIN_LINK="$PREFIX/usr/local/bin/$NAME"

if [ "$(id -u)" != 0 ] && [ -z "$PREFIX" ]; then
  die "run as root (sudo), or use --prefix DIR --no-systemd for a test install"
fi
if [ "$SYSTEMD" = 1 ] && ! command -v systemctl >/dev/null 2>&1; then
  die "systemctl not found: this installer targets systemd; use --no-systemd to skip the service"
fi

# ----------------------------------------------------------------------------- helpers
# The userland's architecture: a 32-bit Raspberry Pi OS on a Pi 4 runs a 64-bit kernel, so
# `uname -m` says aarch64 there while dpkg (and Python) are armhf. PRINTER_WATCHDOG_TEST_ARCH
# stands in for it in the project's tests only (tests/arm64/armhf.sh).
userland_arch() {
  if [ -n "${PRINTER_WATCHDOG_TEST_ARCH:-}" ]; then
    printf '%s\n' "$PRINTER_WATCHDOG_TEST_ARCH"
  elif command -v dpkg >/dev/null 2>&1; then
    dpkg --print-architecture
  else
    uname -m
  fi
}

# Before anything is created: a 32-bit OS would otherwise fail half-way, in pip.
check_arch() {
  local arch
  arch="$(userland_arch)"
  case "$arch" in
    amd64|x86_64|arm64|aarch64) ;;
    armhf|armel|arm|armv6l|armv7l|i386|i486|i586|i686)
      die "this is a 32-bit system ($arch), which printer-watchdog does not support (no TFLite runtime for it on PyPI): install a 64-bit OS, such as Raspberry Pi OS (64-bit) on a Pi 3, 4, 5 or Zero 2 W" ;;
    *) say "warning: untested architecture $arch; pip may find no TFLite runtime wheel for it" ;;
  esac
}

user_exists() { getent passwd "$SERVICE_USER" >/dev/null 2>&1; }

# chown to the service user where it exists (a --no-systemd test install may not have it).
own() {
  if user_exists && [ "$(id -u)" = 0 ]; then chown "$@"; fi
}

create_user() {
  if [ "$SYSTEMD" = 0 ]; then
    user_exists || say "not creating user $SERVICE_USER (--no-systemd); files stay owned by $(id -un)"
    return
  fi
  if ! user_exists; then
    # the group may outlive an earlier --purge (userdel keeps a group that has other members)
    local group=(--user-group)
    ! getent group "$SERVICE_USER" >/dev/null 2>&1 || group=(-g "$SERVICE_USER")
    useradd --system "${group[@]}" --home-dir "/var/lib/$NAME" --no-create-home \
      --shell /usr/sbin/nologin --comment "printer-watchdog daemon" "$SERVICE_USER"
    say "created system user $SERVICE_USER"
  fi
  if getent group video >/dev/null 2>&1; then
    usermod -a -G video "$SERVICE_USER"
  else
    say "warning: no 'video' group on this system: the unit asks for it (SupplementaryGroups=video) and"
    say "  will not start without it; create it (sudo groupadd --system video) or remove that line in a drop-in"
  fi
}

pick_python() {
  local candidates=("$PYTHON")
  [ -n "$PYTHON" ] || candidates=(python3.11 python3.12 python3.13 python3)
  for py in "${candidates[@]}"; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"
      return
    fi
  done
  die "no Python >= 3.11 found (tried ${candidates[*]}); on Debian/Raspberry Pi OS: apt install python3 python3-venv"
}

make_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    say "reusing virtualenv $VENV"
    return
  fi
  local py
  py="$(pick_python)"
  rm -rf "$VENV"
  mkdir -p "$OPT"
  "$py" -m venv "$VENV" || die "'$py -m venv' failed; on Debian/Raspberry Pi OS: apt install python3-venv"
  say "created virtualenv $VENV ($("$VENV/bin/python" -V))"
}

pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check --root-user-action=ignore \
    ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$@"
}

# The daemon tries ai-edge-litert first: one left from an earlier install would be used
# instead of the tflite-runtime asked for.
drop_litert() {
  "$VENV/bin/python" -m pip uninstall -y -q --disable-pip-version-check ai-edge-litert >/dev/null 2>&1 || true
}

# Build from a clean copy: an in-tree build would leave build/ in the checkout, and stale
# files there could end up in the wheel. Readable by the service user, who checks the config
# with it before it is installed.
copy_source() {
  SRC_COPY="$(mktemp -d)"
  trap 'rm -rf "$SRC_COPY"' EXIT
  chmod 0755 "$SRC_COPY"
  tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build \
    --exclude=./dist --exclude=./runs --exclude=./research --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$SRC_COPY" -xf -
  # tar gives the copy the checkout's own modes (a clone made under umask 077): the service
  # user must read the package, or its check runs the installed old code instead, without a
  # word; nothing else of the checkout (a config or a secret kept there) is opened to all
  chmod -R a+rX "$SRC_COPY/watchdog"
}

# An upgrade whose new version refuses the config would leave a service that does not start
# again: checked with the new code (run from its copy, in the virtualenv as it is, the model
# read but not run: the new one may need the new libraries) before anything is changed. Where
# the installed libraries cannot run the new code, the check after installing decides, alone.
precheck_config() {
  [ "$UPGRADE" = 1 ] && [ "$SYSTEMD" = 1 ] && [ -e "$ETC/config.yaml" ] && [ -x "$VENV/bin/python" ] || return 0
  local rc=0
  check_config_as_service env PYTHONPATH="$SRC_COPY" -- --no-model-run >/dev/null || rc=$?
  case "$rc" in
    0) ;;
    2) die "the new version refuses $ETC/config.yaml (above): nothing was changed, the installed version stays. Fix the file for the new version (a running service keeps the settings it read), then run install.sh again" ;;
    *) say "warning: could not check $ETC/config.yaml with the new version before installing it (above); it is checked after" ;;
  esac
}

install_package() {
  local src="$SRC_COPY"
  if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.maxsize < 2**32)'; then
    say "warning: this is a 32-bit Python; PyPI has no TFLite runtime wheels for it (ai-edge-litert and"
    say "tflite-runtime publish x86_64 and aarch64 only): use a 64-bit OS such as Raspberry Pi OS 64-bit"
  fi
  case "$RUNTIME" in
    litert) pip_install "${src}[pi,notify]" ;;
    tflite) pip_install "${src}[notify]" "tflite-runtime" "numpy<2"; drop_litert ;;
    auto)
      if ! pip_install "${src}[pi,notify]"; then
        # Usually: no ai-edge-litert wheel for this platform (32-bit Raspberry Pi OS).
        say "pip could not install printer-watchdog[pi] on $(uname -m) (above); retrying with tflite-runtime and numpy<2"
        pip_install "${src}[notify]" "tflite-runtime" "numpy<2" ||
          die "pip failed twice (see above); fix the first error, or choose one with --runtime litert|tflite"
        drop_litert
      fi ;;
  esac
  rm -rf "$src"
  trap - EXIT
  # From /, so that a checkout in the current folder cannot shadow the installed package.
  (cd / && "$VENV/bin/python" -c '
import watchdog
assert getattr(watchdog, "IS_PRINTER_WATCHDOG", False), watchdog.__file__
try:
    import ai_edge_litert.interpreter
except ImportError:
    import tflite_runtime.interpreter
') || die "the virtualenv at $VENV cannot import printer-watchdog and a TFLite runtime"
  say "installed printer-watchdog $("$VENV/bin/python" -c 'import watchdog; print(watchdog.__version__)') into $VENV"
}

install_files() {
  # The docs and the example travel with the install (the unit's Documentation= points here).
  mkdir -p "$OPT/docs"
  install -m 0644 "$REPO/config.example.yaml" "$OPT/config.example.yaml"
  for doc in deploy.md configuration.md; do
    [ ! -f "$REPO/docs/$doc" ] || install -m 0644 "$REPO/docs/$doc" "$OPT/docs/$doc"
  done
  mkdir -p "$(dirname "$BIN_LINK")"
  ln -sfn "$VENV/bin/$NAME" "$BIN_LINK"

  mkdir -p "$ETC"
  chmod 0750 "$ETC"
  own "root:$SERVICE_USER" "$ETC"
  if [ -e "$ETC/config.yaml" ]; then
    say "keeping existing $ETC/config.yaml (the new example is $OPT/config.example.yaml)"
  else
    # storage.dir spelled out, so that commands run by hand (collect, feedback) use the
    # service's state folder rather than their own user's ~/.local/state.
    sed -e "s|^  # dir: /var/lib/$NAME .*|  dir: $STATE   # set by install.sh; the service's StateDirectory|" \
      "$REPO/config.example.yaml" >"$ETC/config.yaml.tmp"
    grep -q "^  dir: $STATE " "$ETC/config.yaml.tmp" || die "config.example.yaml lacks the '# dir: /var/lib/$NAME' line"
    chmod 0600 "$ETC/config.yaml.tmp"
    mv "$ETC/config.yaml.tmp" "$ETC/config.yaml"
    own "$SERVICE_USER:$SERVICE_USER" "$ETC/config.yaml"
    CREATED_CONFIG=1
    say "created $ETC/config.yaml from config.example.yaml"
  fi
  for secret in "${SECRET_FILES[@]}"; do
    local path="$ETC/$secret"
    if [ -e "$path" ]; then
      if [ -n "$(find "$path" -perm /077)" ]; then
        say "warning: $path can be read by others than its owner (mode $(stat -c %a "$path")); chown $SERVICE_USER $path && chmod 600 $path"
      fi
    else
      install -m 0600 /dev/null "$path"
      own "$SERVICE_USER:$SERVICE_USER" "$path"
    fi
  done

  mkdir -p "$STATE"
  chmod 0750 "$STATE"
  # Recursively: a command once run as plain root leaves files the service cannot write, and
  # systemd's own chown of the state folder skips a folder whose top is owned right.
  own -R "$SERVICE_USER:$SERVICE_USER" "$STATE"

  # The unit is ours: rewritten on every run (local changes go in `systemctl edit` drop-ins).
  mkdir -p "$(dirname "$UNIT")"
  sed -e "s#/opt/$NAME/#$OPT/#g" -e "s#/etc/$NAME/#$ETC/#g" \
    "$REPO/systemd/$NAME.service" >"$UNIT.tmp"
  chmod 0644 "$UNIT.tmp"
  mv "$UNIT.tmp" "$UNIT"
  say "installed $UNIT"
}

# activating counts as running: a start waiting for its READY, or systemd restarting it after
# a crash (auto-restart)
service_running() {
  case "$(systemctl show -p ActiveState --value "$NAME.service" 2>/dev/null)" in
    active|reloading|activating) return 0 ;;
  esac
  return 1
}

start_service() {
  if [ "$SYSTEMD" = 0 ]; then
    say "skipping systemctl (--no-systemd)"
    return
  fi
  local was_active=0 was_failed=0
  # a service starting or restarting after a crash goes on to run the new code too
  ! service_running || was_active=1
  if [ "$was_active" = 0 ] && [ "$UPGRADE" = 1 ] && systemctl is-failed --quiet "$NAME.service"; then
    was_failed=1  # systemd gave up on it (start limit): the new version may well start
  fi
  systemctl daemon-reload
  if [ "$UPGRADE" = 0 ] && [ -z "$CREATED_CONFIG" ] && ! check_config_as_service >/dev/null; then
    # a config kept from an earlier install (--uninstall keeps it) that this version refuses:
    # started, the service would fail now and at every boot, with systemd's line alone
    systemctl enable "$NAME.service"
    say "error: this version refuses $ETC/config.yaml, kept from an earlier install (above);"
    say "  the service is enabled, not started. Fix the file, then: sudo systemctl start $NAME"
    REFUSED=1
  elif [ "$UPGRADE" = 0 ]; then
    systemctl enable --now "$NAME.service"
    say "service $NAME enabled and started"
  elif [ "$was_active" = 0 ] && [ "$was_failed" = 0 ]; then
    # stopped by its owner (collecting frames from its camera, say): their choice stands
    say "service $NAME is stopped: left stopped (sudo systemctl start $NAME starts the new version)"
  elif ! check_config_as_service >/dev/null; then
    # Restarting would stop the running watchdog for good: keep it until the file is fixed.
    say "error: the new version refuses $ETC/config.yaml (above); the service was not restarted"
    if [ "$was_active" = 1 ]; then
      say "  and runs the old version only until it next starts (a reboot, a crash): it will then"
      say "  not start. Fix the file now, then: sudo systemctl restart $NAME"
    else
      say "  (it had failed): fix the file, then: sudo systemctl restart $NAME"
    fi
    REFUSED=1
  else
    # also the start limit's count: an installer run again and again must not reach it
    systemctl reset-failed "$NAME.service" 2>/dev/null || true
    systemctl restart "$NAME.service"
    say "service $NAME restarted on the new version"
  fi
}

# As the service runs: its user (the secret files it can read), its state folder, from /.
as_service() {
  if user_exists && [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u "$SERVICE_USER" -- env STATE_DIRECTORY="$STATE" "$@")
  else
    (cd / && env STATE_DIRECTORY="$STATE" "$@")
  fi
}

# The config as the service will read it: with the variables its unit and drop-ins give it
# (Environment=, EnvironmentFile=; a config may name ${VAR}), read as root as systemd reads
# them and handed to the check through a pipe (watchdog/unit_environment.py).
# Arguments: a prefix for every step (env PYTHONPATH=DIR: other code than the installed), then
# after "--" options for check-config.
check_config_as_service() {
  local prefix=() options=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do prefix+=("$1"); shift; done
  [ $# -eq 0 ] || { shift; options=("$@"); }
  { systemctl show -p Environment -p EnvironmentFiles "$NAME.service" 2>/dev/null || true; } |
    (cd / && ${prefix[@]+"${prefix[@]}"} "$VENV/bin/python" -m watchdog.unit_environment) |
    as_service ${prefix[@]+"${prefix[@]}"} "$VENV/bin/python" -m watchdog.unit_environment --exec -- \
      ${prefix[@]+"${prefix[@]}"} "$VENV/bin/python" -m watchdog check-config --config "$ETC/config.yaml" \
      ${options[@]+"${options[@]}"}
}

next_steps() {
  cat <<EOF

printer-watchdog is installed. Next:
  1. Edit $ETC/config.yaml: the camera source, the printer API (kind, url), action: pause
     (the example only notifies) and MQTT.
     ${CREATED_CONFIG:+(It is a fresh copy of the example: the printer API is 'none' and MQTT is off.)}
  2. Put secrets in their files, never in config.yaml (nor on a command line: the shell's
     history keeps it). For example, paste the key, press Enter, then Ctrl-D:
       sudo tee $ETC/octoprint.key >/dev/null
     and point the config at them (api_key_file: octoprint.key, password_file: mqtt.password).
  3. Check and apply:
       sudo -u $SERVICE_USER $BIN_LINK check-config --config $ETC/config.yaml
       sudo systemctl restart $NAME
       journalctl -u $NAME -f
  Guide: $OPT/docs/deploy.md   Reference: $OPT/docs/configuration.md
EOF
}

# ----------------------------------------------------------------------------- uninstall
# The processes of the service user, by PID (a `collect` in another terminal): userdel refuses
# while one runs, so --purge says so before it deletes anything.
user_processes() {
  local uid d pids=""
  uid=$(id -u "$SERVICE_USER" 2>/dev/null) || return 0
  for d in /proc/[0-9]*; do
    [ "$(stat -c %u "$d" 2>/dev/null)" != "$uid" ] || pids="$pids ${d#/proc/}"
  done
  printf '%s' "${pids# }"
}

uninstall() {
  local was_active=0
  if [ "$SYSTEMD" = 1 ]; then
    ! service_running || was_active=1
    systemctl stop "$NAME.service" 2>/dev/null || true
  fi
  if [ "$ACTION" = purge ] && [ "$SYSTEMD" = 1 ] && user_exists; then
    local running
    running=$(user_processes)
    if [ -n "$running" ]; then
      # refused: the watchdog goes on as it was (a refusal that left it off lost the watching)
      [ "$was_active" = 0 ] || systemctl start "$NAME.service" 2>/dev/null || true
      die "--purge: the user $SERVICE_USER still runs a process (PID $running; see ps -fu $SERVICE_USER): stop it, then run --purge again. Nothing was deleted or disabled"
    fi
  fi
  [ "$SYSTEMD" = 0 ] || systemctl disable "$NAME.service" 2>/dev/null || true
  rm -f "$UNIT" "$BIN_LINK"
  # the drop-ins of `systemctl edit` may hold a token (Environment=): purged with the secrets
  [ "$ACTION" != purge ] || rm -rf "$UNIT.d"
  [ "$SYSTEMD" = 0 ] || systemctl daemon-reload
  case "$OPT" in */opt/$NAME) rm -rf "$OPT" ;; *) die "refusing to delete unexpected path $OPT" ;; esac
  say "removed the service, $OPT and the unit"
  if [ "$ACTION" = purge ]; then
    if [ "$SYSTEMD" = 1 ] && user_exists; then
      userdel "$SERVICE_USER" || die "userdel $SERVICE_USER failed (above): $ETC and $STATE are kept; run --purge again"
    fi
    rm -rf "$ETC" "$STATE"
    say "purged $ETC, $STATE, the unit's drop-ins and the user $SERVICE_USER"
  else
    say "kept $ETC (config, secrets) and $STATE (incidents, collected frames, models); --purge deletes them"
    [ ! -d "$UNIT.d" ] || say "kept the unit's drop-ins in $UNIT.d (systemctl edit); --purge deletes them"
  fi
}

# ----------------------------------------------------------------------------- main
umask 022
case "$ACTION" in
  install)
    if [ ! -f "$REPO/pyproject.toml" ] || [ ! -f "$REPO/systemd/$NAME.service" ]; then
      die "$REPO is not a printer-watchdog checkout (run deploy/install.sh from inside one)"
    fi
    CREATED_CONFIG=""
    REFUSED=0
    UPGRADE=0
    [ ! -e "$UNIT" ] || UPGRADE=1
    check_arch
    create_user
    make_venv
    copy_source
    precheck_config
    install_package
    install_files
    start_service
    next_steps
    [ "$REFUSED" = 0 ] || exit 1  # installed, but the watchdog will not start as configured
    ;;
  uninstall|purge) uninstall ;;
esac
