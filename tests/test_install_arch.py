"""deploy/install.sh on a 32-bit userland: one line, a non-zero exit, nothing installed.

Runs tests/arm64/armhf.sh (also part of `make test-arm64`), which fakes the userland's
architecture through PRINTER_WATCHDOG_TEST_ARCH: the refusal happens before Python, pip or the
network, so an armhf root would only add dpkg printing "armhf" (see that script). Cheap, so
the x86 suite runs it too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installer_refuses_a_32_bit_userland_in_one_line() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "tests" / "arm64" / "armhf.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "32-bit system (i386)" in proc.stdout


def test_installer_accepts_this_machines_architecture(tmp_path: Path) -> None:
    """The same check lets this 64-bit host (amd64 or arm64) through: the installer's two
    functions, taken from the script and run alone."""
    script = ROOT / "deploy" / "install.sh"
    probe = f'source <(sed -n "/^userland_arch()/,/^}}/p; /^check_arch()/,/^}}/p" {script}); say() {{ echo "$*"; }}; die() {{ echo "die: $*"; exit 1; }}; check_arch && echo ok'
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
