# Runs inside the emulated arm64 Debian 12 root (started by tests/arm64/run.sh, as root, with
# a clean environment): what a Raspberry Pi owner does after cloning the project.
set -euo pipefail
SRC=/home/pi/printer-watchdog
PREFIX=/srv/pw
OUT=/tmp/pw
fail() { printf '%s\n' "FAILED: $*" >&2; exit 1; }

echo "system: $(uname -m), dpkg $(dpkg --print-architecture), $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 -V)"
[ "$(dpkg --print-architecture)" = arm64 ] || fail "this root is not arm64"

cd "$SRC"
deploy/install.sh --prefix "$PREFIX" --no-systemd
PW="$PREFIX/usr/local/bin/printer-watchdog"
VPY="$PREFIX/opt/printer-watchdog/venv/bin/python"
[ -x "$PW" ] || fail "install.sh made no $PW"
"$VPY" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("venv:", sys.version.split()[0], platform.machine())'

# 1. The configuration checker on the example and on the config the installer wrote.
"$PW" check-config --config "$SRC/config.example.yaml"
"$PW" check-config --config "$PREFIX/etc/printer-watchdog/config.yaml"

# 2. The demo: built-in frames, simulated printer; it must pause and write the alert.
cd "$OUT"
"$PW" demo --out "$OUT/demo" >"$OUT/demo.jsonl" 2>"$OUT/demo.log" || { cat "$OUT/demo.log" >&2; fail "demo exited non-zero"; }
cat "$OUT/demo.log"
grep -q "printer state now: paused" "$OUT/demo.log" || fail "demo: the simulated printer was not paused"
alert="$(find "$OUT/demo/incidents" -name alert.json | head -n1)"
[ -n "$alert" ] || fail "demo: no alert.json under $OUT/demo/incidents"
[ -s "$(dirname "$alert")/heatmap.jpg" ] || fail "demo: no heatmap.jpg next to $alert"
"$VPY" -c 'import json, sys; a = json.load(open(sys.argv[1])); assert a["action"] == "pause" and a["action_result"]["outcome"] == "done", a; print("alert:", a["message"])' "$alert"

# 3. Scores of the bundled demo frames, compared with the x86 run's on the host.
frames="$("$VPY" -c 'import pathlib, watchdog; print(pathlib.Path(watchdog.__file__).parent / "demo" / "frames")')"
"$PW" score "$frames"/*.jpg >"$OUT/scores-arm64.jsonl"
echo "scored $(wc -l <"$OUT/scores-arm64.jsonl") frames"

# 4. The daemon's environment has no TensorFlow, and the daemon's modules do not want it.
if "$VPY" -c 'import tensorflow' 2>/dev/null; then fail "tensorflow is importable in the installed virtualenv"; fi
"$VPY" -c 'import sys, watchdog.daemon, watchdog.__main__; assert "tensorflow" not in sys.modules; print("import tensorflow fails; the daemon does not import it")'
echo "inside: all checks passed"
