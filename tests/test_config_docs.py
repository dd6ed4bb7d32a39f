"""The config reference and the example file stay in step with the schema in watchdog/config.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from watchdog import docgen
from watchdog.config import Config, load_config
from watchdog.schema import Model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def _keys(model: type[Model], path: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        keys.append(key)
        sub = docgen._model_of(info.annotation)
        if sub:
            keys += _keys(sub[0], key + ("[]" if sub[1] else ""))
    return keys


def test_committed_reference_is_current() -> None:
    generated = docgen.render()
    committed = docgen.DEFAULT_OUTPUT.read_text()
    assert committed == generated, (
        "docs/configuration.md is stale: regenerate it with `.venv/bin/python -m watchdog.docgen` and commit it"
    )


def test_reference_lists_every_key() -> None:
    text = docgen.render()
    missing = [k for k in _keys(Config) if f"| `{k}` |" not in text]
    assert not missing
    assert "| `printers[].camera.source` | integer \\| string | `0` |" in text


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(docgen.render().replace("keep_incidents", "keep_incident"))
    proc = subprocess.run(
        [sys.executable, "-m", "watchdog.docgen", "--check", "--output", str(stale)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 1
    assert (
        "python -m watchdog.docgen" in proc.stderr and "+| `storage.keep_incidents`" in proc.stdout
    )


def test_example_validates() -> None:
    config = load_config(EXAMPLE)
    assert [p.name for p in config.printers] == ["printer1"]
    # Safe before it is edited: no printer API to pause and no broker to reach.
    assert config.printers[0].api.kind == "none" and not config.mqtt.enabled


def test_example_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    # A key counts when it is written as `name:` (active or commented out) in the example.
    written = set(re.findall(r"^[\s#-]*([a-z_]+):", text, flags=re.M))
    written |= set(re.findall(r"[{,]\s*([a-z_]+):", text))
    missing = [k for k in _keys(Config) if k.rsplit(".", 1)[-1].removesuffix("[]") not in written]
    assert not missing, f"config.example.yaml lacks {missing}"
