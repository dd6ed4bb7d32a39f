"""The import name `watchdog` is shared with PyPI's file-system watcher: make sure it is ours."""

import subprocess
import sys


def test_import_watchdog_is_this_project() -> None:
    import watchdog

    assert getattr(watchdog, "IS_PRINTER_WATCHDOG", False), (
        f"`import watchdog` resolved to {watchdog.__file__}, not printer-watchdog: "
        "install printer-watchdog in its own virtualenv, never in OctoPrint's"
    )


def test_daemon_side_never_imports_tensorflow() -> None:
    code = (
        "import sys, watchdog.__main__, watchdog.detection.model, watchdog.detection.bundle, watchdog.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
