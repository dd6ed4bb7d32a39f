"""Config files built to cost time or memory are refused before anything is built from them.

A YAML alias bomb is a few hundred bytes that expand to billions of values; PyYAML builds
it cheaply (aliases share objects) but every walk over it afterwards (``${ENV}`` expansion,
validation) pays the full expansion. The size is counted on the node graph, before that.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.daemon_helpers import run_cli
from watchdog.config import MAX_CONFIG_NODES, ConfigError, load_config


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"printers: [{{name: p1, camera: {{source: *a{levels}}}}}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb())  # 9**9 = 387 million values once expanded
    try:
        proc = run_cli("check-config", "--config", str(config), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("check-config spends minutes on an alias bomb")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {config}: more than {MAX_CONFIG_NODES} values once aliases are expanded (an alias bomb?)"
    )


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "loop.yaml"
    config.write_text("a: &a [*a]\nprinters: [{name: p1}]\n")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_config(config)


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text("printers: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(config)


def test_a_huge_config_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    config.write_text("printers: [{name: p1}]\n" + "#" * 2_000_000 + "\n")
    with pytest.raises(ConfigError, match="more than the 1000000 bytes allowed"):
        load_config(config)


def test_ordinary_anchors_still_work(tmp_path: Path) -> None:
    config = tmp_path / "anchors.yaml"
    config.write_text(
        "printers:\n"
        "  - {name: p1, camera: &cam {source: /dev/video0, interval_s: 5}}\n"
        "  - {name: p2, camera: *cam}\n"
    )
    loaded = load_config(config)
    assert (
        loaded.printers[1].camera == loaded.printers[0].camera
        and loaded.printers[1].camera.interval_s == 5
    )


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path: Path) -> None:
    """The README says to repeat a printer's block for a second printer; repeated with its
    `printers:` heading, YAML kept the last one without a word: check-config said "ok: 1
    printer(s)" and the first printer was never watched."""
    config = tmp_path / "twice.yaml"
    config.write_text(
        "printers:\n  - name: ender3\n    action: notify\n"
        "printers:\n  - name: prusa\n    action: notify\n"
    )
    proc = run_cli("check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {config}: line 4: 'printers' is given twice (first on line 1): the second "
        "would replace the first; merge them"
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "printers:\n  - name: p1\n    detection: {consecutive: 3}\n    detection: {consecutive: 5}\n"
    )
    with pytest.raises(ConfigError, match="line 4: 'detection' is given twice"):
        load_config(nested)


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ('model: ""\n', "model"),
        ("storage: {dir: '  '}\n", "storage.dir"),
        ("mqtt: {host: h, tls: {ca_file: ''}}\n", "mqtt.tls.ca_file"),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_the_working_folder(
    tmp_path: Path, yaml_text: str, key: str
) -> None:
    """``model: ""`` read as the config's folder (or / under systemd), not as the shipped
    model its writer meant: the daemon then refused a bundle it never named."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text + "printers: [{name: p1, camera: {source: 'http://cam/s.jpg'}}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value) == (
        f"{config}: {key}: empty: leave the key out for its default, or give a path"
    )


@pytest.mark.parametrize(
    "url", ["http://[pi.lan]:8787", "http://pi.lan]:8787", "http://[fe80::1", "http://pi:99999"]
)
def test_an_actions_url_without_a_usable_host_is_refused_in_one_line(
    tmp_path: Path, url: str
) -> None:
    """A host no URL parser takes passed check-config, then stopped the daemon at its start
    with a traceback (a restart loop under systemd)."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "http: {listen: '0.0.0.0:8787', password: long-enough-password}\n"
        f"notify: [{{url: 'ntfys://ntfy.sh/x', actions_url: '{url}'}}]\n"
        "printers: [{name: p1, camera: {source: 'http://cam/s.jpg'}}]\n"
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "notify.0.actions_url: must be this watchdog's own address" in line, line
    assert url not in line
