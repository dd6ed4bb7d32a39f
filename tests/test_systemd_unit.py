"""The shipped unit passes `systemd-analyze verify` and keeps its `security` exposure OK or better.

`verify` insists that ExecStart's program exists, and /opt/printer-watchdog/venv is not
installed on a test machine: the test verifies a copy of the unit whose ExecStart points at
this interpreter, everything else byte for byte the same. (tests/test_install.py verifies the
unit as the installer renders it into a temporary root, against a real virtualenv.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "printer-watchdog.service"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
VENV_PYTHON = "/opt/printer-watchdog/venv/bin/python"
# systemd-analyze security's bands, best first.
GOOD_LEVELS = ("PERFECT", "SAFE", "OK")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing: run tests/install-servers.sh",
)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify`; it exits 0 even on unknown keys, so callers check stderr too."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def exposure(unit: Path) -> tuple[float, str]:
    """The overall exposure figure and level word of `systemd-analyze security --offline=yes`."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
    assert match, f"no exposure line in:\n{proc.stdout}\n{proc.stderr}"
    return float(match.group(1)), match.group(2)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    assert (
        f"ExecStart={VENV_PYTHON} -m watchdog run --config /etc/printer-watchdog/config.yaml"
        in text
    )
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(VENV_PYTHON, sys.executable))
    return copy


def test_unit_verifies(unit_copy: Path) -> None:
    proc = verify(unit_copy)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_verify_catches_a_broken_unit(unit_copy: Path) -> None:
    # The check above can fail: a typo in a key is reported.
    unit_copy.write_text(unit_copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    assert "Unknown key" in verify(unit_copy).stderr


def test_security_exposure_ok_and_documented(unit_copy: Path) -> None:
    value, level = exposure(unit_copy)
    assert level in GOOD_LEVELS, f"exposure {value} {level}: the unit lost hardening"
    documented = re.search(r"exposure level (\d+\.\d+) (\w+)", DEPLOY_DOC.read_text())
    assert documented, "docs/deploy.md must state the unit's exposure level"
    assert value <= float(documented.group(1)), (
        f"exposure rose to {value} {level}, docs/deploy.md says {documented.group(1)}: "
        "restore the hardening or update the figure and its explanation"
    )


def test_never_root_and_in_video_group() -> None:
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["User"] == "printer-watchdog"
    assert "video" in settings["SupplementaryGroups"].split()
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["CapabilityBoundingSet"] == ""
