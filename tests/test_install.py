"""deploy/install.sh, run for real into a temporary root (--prefix, --no-systemd).

It builds a real virtualenv and pip-installs this checkout with the `pi` extra. To stay fast
and work offline after the first run, pip installs from a wheelhouse of the project's
dependencies (pyproject's dependencies + the `pi` extra + the build backend), downloaded once
from PyPI into .cache/ and reused. Without PyPI and without that cache the tests skip.
Both runtimes are exercised: ai-edge-litert (the `pi` extra) and the tflite-runtime fallback,
each scoring frames with the tiny bundle through the installed `printer-watchdog` command.
The tests run in file order: install, inspect, score, re-run, uninstall, purge.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.plugins.mosquitto import Broker, free_port
from tests.systemd_sandbox import NotifySocket, daemon_config, drive_daemon, write_frames

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "install.sh"
SECRETS = ("octoprint.key", "moonraker.key", "mqtt.password")


def _requirements(runtime: list[str] | None = None) -> list[str]:
    """pyproject's dependencies, the TFLite runtime (the `pi` extra by default), the `notify` extra
    and the build backend."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    runtime = runtime if runtime is not None else extras["pi"]
    # the installer adds the notify extra (Apprise) by default
    return (
        project["project"]["dependencies"]
        + runtime
        + extras["notify"]
        + project["build-system"]["requires"]
    )


def _wheelhouse(name: str, reqs: list[str]) -> Path:
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256("\n".join([version, *reqs]).encode()).hexdigest()[:12]
    folder = ROOT / ".cache" / f"wheelhouse-{name}-{key}"
    stamp = folder / ".complete"
    if not stamp.exists():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--only-binary",
                ":all:",
                "--dest",
                str(folder),
                *reqs,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.skip(
                f"cannot download the wheels to install from (no PyPI?): {proc.stderr.strip()[-300:]}"
            )
        stamp.touch()
    return folder


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    return _wheelhouse("pi", _requirements())


@pytest.fixture(scope="session")
def wheelhouse_tflite() -> Path:
    """The fallback runtime: tflite-runtime 2.14 only works with numpy<2."""
    return _wheelhouse("tflite", _requirements(["tflite-runtime", "numpy<2"]))


def _base_python() -> str:
    """Debian's python3.11 as on the Pi when it is here (also reachable by an unprivileged user),
    else this interpreter; the wheelhouse was downloaded for this Python version."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if (
        system.exists()
        and subprocess.run([system, "-c", "import venv, ensurepip"], capture_output=True).returncode
        == 0
    ):
        return str(system)
    return sys.executable


def run_install(
    root: Path, *args: str, wheels: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT), "--prefix", str(root), "--no-systemd", *args]
    if wheels:
        cmd += [
            "--python",
            _base_python(),
            "--pip-args",
            f"-q --no-compile --no-index --find-links {wheels}",
        ]
    # A neutral folder: the installer must not depend on being started from the checkout.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=root.parent)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    root = tmp_path_factory.mktemp("fakeroot")
    run_install(root, wheels=wheelhouse)
    return root


def venv_python(root: Path) -> Path:
    return root / "opt/printer-watchdog/venv/bin/python"


def in_venv(root: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    # From an empty folder and with a clean environment, so the checkout cannot shadow the install.
    clean = {"PATH": os.environ["PATH"], "HOME": str(root), **env}
    return subprocess.run(
        [str(venv_python(root)), *code.split(" ")]
        if code.startswith("-m ")
        else [str(venv_python(root)), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env=clean,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_help_and_bad_option() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and "--prefix DIR" in proc.stdout and "--uninstall" in proc.stdout
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1 and "unknown option '--frobnicate'" in proc.stderr


@pytest.mark.parametrize("prefix", [["--prefix", ""], ["--prefix="]], ids=["separate", "joined"])
def test_an_empty_prefix_is_refused_not_read_as_the_real_system(prefix: list[str]) -> None:
    """``--purge --prefix "$TESTROOT"`` with the variable unset purged the real install. The
    ``--help`` after it keeps this test harmless if the check is ever lost: it then exits 0."""
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--purge", *prefix, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "--prefix needs a folder, got an empty one" in proc.stderr


@pytest.mark.parametrize("name", ["my printer", "a&b", "c#d"])
def test_a_prefix_the_unit_cannot_hold_is_refused(tmp_path: Path, name: str) -> None:
    """A space, ``&`` or ``#`` in the folder broke the rendered unit's paths (sed, ExecStart=):
    refused before anything is written (``--uninstall`` keeps this harmless if it is not)."""
    prefix = tmp_path / name
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--prefix", str(prefix), "--uninstall"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "use a folder with a plain name" in proc.stderr, proc.stderr
    assert list(prefix.iterdir()) == []


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck missing: run tests/install-servers.sh"
)
def test_shellcheck_clean() -> None:
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_tree(root: Path) -> None:
    etc = root / "etc/printer-watchdog"
    # The example, with storage.dir spelled out so that hand-run commands find the incidents.
    config = (etc / "config.yaml").read_text().splitlines()
    example = (ROOT / "config.example.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(example, config, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0].startswith("  # dir: /var/lib/printer-watchdog")
    assert changed[0][1].startswith(f"  dir: {root}/var/lib/printer-watchdog ")
    assert mode(etc / "config.yaml") == 0o600
    assert mode(etc) == 0o750
    for name in SECRETS:
        assert (etc / name).read_text() == "" and mode(etc / name) == 0o600, name
    assert (root / "var/lib/printer-watchdog").is_dir()
    assert (root / "opt/printer-watchdog/docs/deploy.md").is_file()
    assert (root / "opt/printer-watchdog/docs/configuration.md").is_file()
    link = root / "usr/local/bin/printer-watchdog"
    assert link.resolve() == (root / "opt/printer-watchdog/venv/bin/printer-watchdog").resolve()


def test_rendered_unit_points_into_the_root(root: Path) -> None:
    unit = root / "etc/systemd/system/printer-watchdog.service"
    text = unit.read_text()
    assert (
        f"ExecStart={venv_python(root)} -m watchdog run --config {root}/etc/printer-watchdog/config.yaml\n"
        in text
    )
    assert "User=printer-watchdog\n" in text
    if shutil.which("systemd-analyze"):
        # The rendered unit's ExecStart exists here, so verify checks the real thing.
        proc = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_venv_has_ours_and_no_tensorflow(root: Path) -> None:
    proc = in_venv(root, "import watchdog; print(watchdog.IS_PRINTER_WATCHDOG, watchdog.__file__)")
    assert proc.returncode == 0, proc.stderr
    flag, location = proc.stdout.split()
    assert flag == "True" and location.startswith(str(root / "opt/printer-watchdog/venv")), location
    proc = in_venv(root, "import ai_edge_litert.interpreter")
    assert proc.returncode == 0, proc.stderr
    proc = in_venv(root, "import tensorflow")
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


def test_installed_config_validates_in_the_venv(root: Path) -> None:
    proc = in_venv(
        root, f"-m watchdog check-config --config {root}/etc/printer-watchdog/config.yaml"
    )
    # Fails while the package ships no default model (watchdog/models/default/): the installed
    # service could not start either.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{root}/var/lib/printer-watchdog" in proc.stdout


def score_in_venv(root: Path, bundle: Path, frames: list[np.ndarray], tmp: Path) -> list[dict]:
    """`printer-watchdog score` through the installed command link: one JSON line per frame."""
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp / f"frame{i}.jpg")
        cv2.imwrite(str(paths[-1]), frame)
    proc = subprocess.run(
        [
            str(root / "usr/local/bin/printer-watchdog"),
            "score",
            "--model",
            str(bundle),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp)},
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_installed_runtime_scores_frames(
    root: Path,
    tiny_bundle: Path,
    normal_frames: list[np.ndarray],
    anomalous_frames: list[np.ndarray],
    tmp_path: Path,
) -> None:
    lines = score_in_venv(root, tiny_bundle, normal_frames[:2] + anomalous_frames[:2], tmp_path)
    assert [line["anomalous"] for line in lines] == [False, False, True, True]


def test_tflite_runtime_fallback(
    tmp_path_factory: pytest.TempPathFactory,
    wheelhouse_tflite: Path,
    tiny_bundle: Path,
    normal_frames: list[np.ndarray],
    anomalous_frames: list[np.ndarray],
    tmp_path: Path,
) -> None:
    # Where ai-edge-litert has no wheel the installer uses tflite-runtime with numpy<2.
    root = tmp_path_factory.mktemp("fakeroot-tflite")
    run_install(root, "--runtime", "tflite", wheels=wheelhouse_tflite)
    proc = in_venv(root, "import numpy, tflite_runtime; print(numpy.__version__)")
    assert proc.returncode == 0 and proc.stdout.startswith("1."), proc.stdout + proc.stderr
    assert in_venv(root, "import ai_edge_litert").returncode == 1
    assert in_venv(root, "import tensorflow").returncode == 1
    lines = score_in_venv(root, tiny_bundle, normal_frames[:1] + anomalous_frames[:1], tmp_path)
    assert [line["anomalous"] for line in lines] == [False, True]


SERVICE_UID = SERVICE_GID = 65534  # nobody/nogroup stand in for the printer-watchdog user


def _sandbox_tools_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch user"
    for tool in ("bwrap", "setpriv", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"{tool} missing: run tests/install-servers.sh"
    try:
        import pyseccomp  # noqa: F401
    except ImportError:
        return "pyseccomp (test extra) missing"
    return None


def test_installed_service_runs_in_the_sandbox(
    root: Path,
    tiny_bundle: Path,
    normal_frames: list[np.ndarray],
    anomalous_frames: list[np.ndarray],
    mosquitto: Broker,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The installed tree, run the way the rendered unit runs it, with what systemd would do.

    bubblewrap gives the mount namespace (ProtectSystem=strict: all read-only but the state
    folder; ProtectHome; PrivateTmp), setpriv the unprivileged user with no capabilities,
    and tests/systemd_sandbox.py the unit's seccomp filters, umask and environment.
    """
    if reason := _sandbox_tools_missing():
        pytest.skip(reason)
    venv_py = venv_python(root)
    if str(venv_py.resolve()).startswith(("/root/", "/home/")):
        pytest.skip("the venv's base Python lives in a home folder, which ProtectHome hides")
    import pyseccomp

    etc, state = root / "etc/printer-watchdog", root / "var/lib/printer-watchdog"
    unit = root / "etc/systemd/system/printer-watchdog.service"
    # As the docs say: a retrained model under the state folder; the camera is a folder here.
    shutil.copytree(tiny_bundle, state / "models/tiny", dirs_exist_ok=True)
    frames = write_frames(root / "srv/frames", normal_frames, anomalous_frames)
    prefix = f"pw_installed_{os.getpid()}"
    http_port = free_port()
    config = daemon_config(
        state / "models/tiny",
        frames,
        state,
        mosquitto.mqtt_settings(topic_prefix=prefix),
        http_port,
    )
    saved_config = (etc / "config.yaml").read_text()
    (etc / "config.yaml").write_text(yaml.safe_dump(config))
    # What install.sh does when the service user exists.
    for path in [etc / "config.yaml", *(etc / name for name in SECRETS), *state.rglob("*"), state]:
        os.chown(path, SERVICE_UID, SERVICE_GID)
    os.chown(etc, 0, SERVICE_GID)
    os.chmod(root, 0o755)  # a real / is

    lib = tmp_path_factory.mktemp("seccomp-lib")  # pyseccomp alone, for the venv's Python
    shutil.copy(pyseccomp.__file__, lib / "pyseccomp.py")
    # The checkout may itself live under /tmp, which the sandbox replaces: run the helper from lib.
    sandbox_helper = shutil.copy(ROOT / "tests/systemd_sandbox.py", lib / "systemd_sandbox.py")
    run = tmp_path_factory.mktemp("run")
    for folder in (lib, run):
        os.chmod(folder, 0o755)
    notify = NotifySocket(run / "notify")
    cmd = [
        "bwrap",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev-bind",
        "/dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/var/tmp",
        "--tmpfs",
        "/root",
        "--tmpfs",
        "/home",
        *_traversable_parents([root, lib, run]),
        "--ro-bind",
        str(root),
        str(root),
        "--bind",
        str(state),
        str(state),
        "--ro-bind",
        str(lib),
        str(lib),
        "--bind",
        str(run),
        str(run),
        "--chdir",
        "/",
        "setpriv",
        f"--reuid={SERVICE_UID}",
        f"--regid={SERVICE_GID}",
        _supplementary_groups(),
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        str(venv_py),
        str(sandbox_helper),
        str(unit),
        "--",
        *_exec_start(unit),
    ]
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/nonexistent",
        "STATE_DIRECTORY": str(state),
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "PYTHONPATH": str(lib),
    }
    with mosquitto.subscriber(f"{prefix}/#") as sub:
        wrapper = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            alert, _ = drive_daemon(
                wrapper, _child_pid(wrapper.pid), notify, sub, prefix, http_port, _assert_not_root
            )
        finally:
            notify.close()
            (etc / "config.yaml").write_text(saved_config)
    # The incident was written by the service user, private to it (UMask=0077).
    incident = next(
        p for p in (state / "incidents").rglob("*") if p.is_file() and alert["incident"] in str(p)
    )
    assert incident.stat().st_uid == SERVICE_UID and mode(incident) & 0o077 == 0


def _assert_not_root(pid: int) -> None:
    uids = next(
        ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:")
    )
    assert set(uids.split()[1:]) == {str(SERVICE_UID)}, uids  # the service user in every uid


def _traversable_parents(paths: list[Path]) -> list[str]:
    """bwrap options that create the parents of ``paths`` on the private /tmp with mode 0755
    (bwrap's own are 0700, which the unprivileged user could not cross)."""
    parents = sorted({str(a) for p in paths for a in p.parents if len(a.parts) > 2}, key=len)
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]


def _supplementary_groups() -> str:
    """The unit's SupplementaryGroups=video, where this machine has that group."""
    try:
        return f"--groups={grp.getgrnam('video').gr_gid}"
    except KeyError:
        return "--clear-groups"


def _exec_start(unit: Path) -> list[str]:
    line = next(
        v
        for k, v in (ln.split("=", 1) for ln in unit.read_text().splitlines() if "=" in ln)
        if k == "ExecStart"
    )
    return line.split()


def _child_pid(pid: int) -> int:
    """bwrap's child: the daemon (setpriv and the sandbox helper exec into it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError("bwrap started no child")


def test_rerun_keeps_config_and_secrets(root: Path, wheelhouse: Path) -> None:
    etc = root / "etc/printer-watchdog"
    (etc / "config.yaml").write_text("printers:\n  - name: my-ender\n")
    (etc / "octoprint.key").write_text("SECRET-KEY\n")
    proc = run_install(root, wheels=wheelhouse)
    assert "keeping existing" in proc.stdout
    assert (etc / "config.yaml").read_text() == "printers:\n  - name: my-ender\n"
    assert (etc / "octoprint.key").read_text() == "SECRET-KEY\n" and mode(
        etc / "octoprint.key"
    ) == 0o600
    assert in_venv(root, "import watchdog").returncode == 0


def test_uninstall_keeps_config_and_incidents_then_purge(root: Path) -> None:
    etc = root / "etc/printer-watchdog"
    (etc / "config.yaml").write_text("printers:\n  - name: my-ender\n")
    (etc / "octoprint.key").write_text("SECRET-KEY\n")
    incident = root / "var/lib/printer-watchdog/incidents/0001/alert.json"
    incident.parent.mkdir(parents=True)
    incident.write_text("{}")
    run_install(root, "--uninstall")
    assert not (root / "opt/printer-watchdog").exists()
    assert not (root / "etc/systemd/system/printer-watchdog.service").exists()
    assert not (root / "usr/local/bin/printer-watchdog").is_symlink()
    assert (
        root / "etc/printer-watchdog/config.yaml"
    ).read_text() == "printers:\n  - name: my-ender\n"
    assert (root / "etc/printer-watchdog/octoprint.key").exists() and incident.exists()
    run_install(root, "--purge")
    assert not (root / "etc/printer-watchdog").exists()
    assert not (root / "var/lib/printer-watchdog").exists()


# --------------------------------------------------------------------------- without --prefix

# Run as root inside a private mount namespace: /etc is a copy, /opt, /var/lib and
# /usr/local/bin are empty tmpfs, so the real paths, useradd and chown are exercised and the
# machine is untouched. systemctl is the one stand-in (no systemd runs here): it logs its calls
# and remembers whether the unit was started.
_ROOT_MODE_SCRIPT = r"""
set -euo pipefail
cp -a /etc "$W/etc"
mount --bind "$W/etc" /etc
for d in /opt /var/lib /usr/local/bin; do mount -t tmpfs tmpfs "$d"; done
mkdir -p "$W/bin"
cat > "$W/bin/systemctl" <<'SH'
#!/bin/sh
echo "$*" >> "$W/systemctl.log"
case "$*" in
  "show -p ActiveState --value printer-watchdog.service")
    if [ -e "$W/active" ]; then echo active; else echo inactive; fi ;;
  "enable --now printer-watchdog.service"|"start printer-watchdog.service") touch "$W/active" ;;
  "stop printer-watchdog.service") rm -f "$W/active" ;;
  # a drop-in's Environment= (quoted as systemctl quotes a value with a space) and its
  # EnvironmentFile= (root's only, as such a file holding a token usually is)
  "show -p Environment -p EnvironmentFiles printer-watchdog.service")
    printf '%s\n' 'Environment=PYTHONUNBUFFERED=1 "GREETING=hello world"' \
      "EnvironmentFiles=$W/watchdog.env (ignore_errors=no)" \
      "EnvironmentFiles=$W/absent.env (ignore_errors=yes)" ;;
esac
SH
chmod +x "$W/bin/systemctl"
printf '# the file of a drop-in: a token kept out of config.yaml\nOCTOPRINT_KEY="0123456789abcdef"\n' > "$W/watchdog.env"
chmod 600 "$W/watchdog.env"
export PATH="$W/bin:$PATH" W
install() { bash "$SCRIPT" --python "$PY" --pip-args "-q --no-compile --no-index --find-links $WHEELS" "$@"; }
report() {
  echo "== $1"
  getent passwd printer-watchdog || echo "no user"
  id -nG printer-watchdog 2>/dev/null || true
  for p in /etc/printer-watchdog /etc/printer-watchdog/config.yaml /etc/printer-watchdog/octoprint.key \
           /var/lib/printer-watchdog /etc/systemd/system/printer-watchdog.service /opt/printer-watchdog/venv; do
    if [ -e "$p" ]; then stat -c "%n %U:%G %a" "$p"; else echo "$p absent"; fi
  done
}
install; report install
echo 'printers: [{name: mine}]' > /etc/printer-watchdog/config.yaml
mkdir /var/lib/printer-watchdog/outbox; touch /var/lib/printer-watchdog/outbox/made-by-root
install; report rerun
grep -q 'name: mine' /etc/printer-watchdog/config.yaml && echo "config kept"
stat -c "%n %U" /var/lib/printer-watchdog/outbox/made-by-root
cat > /etc/printer-watchdog/config.yaml <<'YAML'
printers:
  - name: mine
    api: {kind: octoprint, url: "http://127.0.0.1:5000", api_key: "${OCTOPRINT_KEY}"}
YAML
echo "== from the unit"; install
echo 'printers: [{name: mine, colour: red}]' > /etc/printer-watchdog/config.yaml
init=$(/opt/printer-watchdog/venv/bin/python -c 'import watchdog; print(watchdog.__file__)')
echo '# marker of the installed code' >> "$init"
echo "== refused"; install || echo "install exit $?"
grep -h 'marker of the installed code' "$init" || true
# a process of the service user (a collect left running in another terminal): nothing purged,
# and the watchdog goes on watching
setpriv --reuid printer-watchdog --regid printer-watchdog --clear-groups sleep 300 &
sleeper=$!
sleep 0.5
rc=0; install --purge || rc=$?; report "purge refused"; echo "purge exit $rc"
[ ! -e "$W/active" ] || echo "the service runs"
kill "$sleeper"; wait "$sleeper" || true
install --uninstall; report uninstall
# installed again over the config --uninstall kept, which this version refuses
echo "== reinstall refused"; install || echo "install exit $?"
install --purge; report purge
# userdel keeps a group that has other members: a later install makes the user in it
groupadd --system printer-watchdog
echo "== group left"; install; report "reinstalled"
"""


def test_root_install_creates_user_and_enables_the_service(
    wheelhouse: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("mount namespaces are not allowed here")
    env = {
        **os.environ,
        "W": str(tmp_path),
        "SCRIPT": str(SCRIPT),
        "PY": _base_python(),
        "WHEELS": str(wheelhouse),
    }
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", _ROOT_MODE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    install, rerun, from_unit, refused, purge_refused, uninstall, purge, reinstalled = (
        out.split(f"== {step}\n")[1].split("==")[0]
        for step in (
            "install",
            "rerun",
            "from the unit",
            "refused",
            "purge refused",
            "uninstall",
            "purge",
            "reinstalled",
        )
    )
    assert "printer-watchdog:x:" in install and "/usr/sbin/nologin" in install
    assert "video" in install.splitlines()[1].split()  # supplementary group for /dev/video*
    assert "/etc/printer-watchdog root:printer-watchdog 750" in install
    assert "/etc/printer-watchdog/config.yaml printer-watchdog:printer-watchdog 600" in install
    assert "/etc/printer-watchdog/octoprint.key printer-watchdog:printer-watchdog 600" in install
    assert "/var/lib/printer-watchdog printer-watchdog:printer-watchdog 750" in install
    assert "/etc/systemd/system/printer-watchdog.service root:root 644" in install
    assert "service printer-watchdog enabled and started" in out
    assert "keeping existing /etc/printer-watchdog/config.yaml" in out
    assert "/opt/printer-watchdog/venv absent" in uninstall and "printer-watchdog:x:" in uninstall
    assert "/etc/printer-watchdog/config.yaml printer-watchdog:printer-watchdog 600" in uninstall
    assert "purge exit 1" in purge_refused and "printer-watchdog:x:" in purge_refused
    assert (
        "/etc/printer-watchdog/config.yaml printer-watchdog:printer-watchdog 600" in purge_refused
    )
    assert "/etc/systemd/system/printer-watchdog.service root:root 644" in purge_refused
    assert "the service runs" in purge_refused  # refused: still enabled and running
    assert "still runs a process (PID " in proc.stderr
    assert "Nothing was deleted or disabled" in proc.stderr
    assert (
        "no user" in purge
        and "/etc/printer-watchdog absent" in purge
        and "/var/lib/printer-watchdog absent" in purge
    )
    calls = (tmp_path / "systemctl.log").read_text().splitlines()
    assert calls == [
        "show -p ActiveState --value printer-watchdog.service",
        "daemon-reload",
        "enable --now printer-watchdog.service",
        # the re-run upgrades the code, the config checked by the new code before it is
        # installed and again after: a running service is restarted to load it
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        "show -p ActiveState --value printer-watchdog.service",
        "daemon-reload",
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        # the start limit's count reset: every start counts toward it, an installer's too
        "reset-failed printer-watchdog.service",
        "restart printer-watchdog.service",
        # a config naming ${OCTOPRINT_KEY}, set in the unit's environment file: checked with it
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        "show -p ActiveState --value printer-watchdog.service",
        "daemon-reload",
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        "reset-failed printer-watchdog.service",
        "restart printer-watchdog.service",
        # a config the new version refuses: nothing installed, the service left as it runs
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        # the purge refused (a process of the user): the service stopped to look, started again
        "show -p ActiveState --value printer-watchdog.service",
        "stop printer-watchdog.service",
        "start printer-watchdog.service",
        # uninstall, then purge
        "show -p ActiveState --value printer-watchdog.service",
        "stop printer-watchdog.service",
        "disable printer-watchdog.service",
        "daemon-reload",
        # installed again over the kept config, which it refuses: enabled, not started
        "show -p ActiveState --value printer-watchdog.service",
        "daemon-reload",
        "show -p Environment -p EnvironmentFiles printer-watchdog.service",
        "enable printer-watchdog.service",
        "show -p ActiveState --value printer-watchdog.service",
        "stop printer-watchdog.service",
        "disable printer-watchdog.service",
        "daemon-reload",
        "show -p ActiveState --value printer-watchdog.service",
        "daemon-reload",
        "enable --now printer-watchdog.service",
    ]
    assert (
        "config kept" in rerun
        and "/etc/printer-watchdog/config.yaml printer-watchdog:printer-watchdog 600" in rerun
    )
    # a file root made in the state folder (a command run with plain sudo) is the service's again
    assert "/var/lib/printer-watchdog/outbox/made-by-root printer-watchdog" in rerun
    assert "restarted on the new version" in out
    assert "restarted on the new version" in from_unit and "refuses" not in from_unit
    assert "0123456789abcdef" not in out + proc.stderr  # the token is checked, never shown
    # checked before anything changed: the new code is not installed, said, exit status 1
    assert "colour" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert "install exit 1" in refused and "installed printer-watchdog" not in refused, refused
    assert "marker of the installed code" in refused, refused
    reinstall_refused = out.split("== reinstall refused\n")[1].split("== purge")[0]
    assert "install exit 1" in reinstall_refused, reinstall_refused
    assert "enabled, not started" in reinstall_refused, reinstall_refused
    group_left = out.split("== group left\n")[1].split("== reinstalled")[0]
    assert "created system user printer-watchdog" in group_left, group_left
    assert "printer-watchdog:x:" in reinstalled
