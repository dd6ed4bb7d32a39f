"""model.json values that pass a loose check but break detection are refused at load.

Each case is the shipped default bundle with one value changed: it must be refused with one
line naming the key. A NaN ``blur_sigma`` made every frame anomalous, ``adaptation.frames``
1e12 never finished calibrating and grew per frame; a FIFO or a deeply nested file must not
hang or crash whoever loads it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.daemon_helpers import run_cli, write_config
from watchdog.detection.bundle import Bundle, BundleError, default_bundle_path


def bundle_with(tmp_path: Path, section: str | None, key: str, value: Any) -> Path:
    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), folder)
    meta = json.loads((folder / "model.json").read_text())
    (meta[section] if section else meta)[key] = value
    (folder / "model.json").write_text(
        json.dumps(meta)
    )  # NaN/Infinity as JSON allows them (Python's json does)
    return folder


BAD = [
    ("scoring", "ssim_sigma", 0),
    ("scoring", "ssim_sigma", -1.5),
    ("scoring", "ssim_sigma", math.nan),
    ("scoring", "ssim_sigma", 1e9),
    ("scoring", "blur_sigma", math.nan),
    ("scoring", "blur_sigma", math.inf),
    ("scoring", "topk", math.nan),
    ("scoring", "topk", "0.1"),
    ("scoring", "window", -1),
    ("scoring", "window", 2.5),
    ("scoring", "window", 10**6),
    ("normal_stats", "heatmap_scale", math.nan),
    ("normal_stats", "heatmap_scale", -1.0),
    ("normal_stats", "std", math.nan),
    ("adaptation", "frames", 10**12),
    ("adaptation", "frames", 2.5),
    ("adaptation", "std_floor", math.nan),
    ("adaptation", "threshold", math.inf),
    ("adaptation", "early_threshold", math.nan),
    ("adaptation", "early_frames", -1),
    ("adaptation", "start_light", "yes"),
    ("adaptation", "clipped_light", 1),
    ("adaptation", "match_light", False),  # the shipped start_light and clipped_light need it
    ("preprocess", "width", 100000),
    ("preprocess", "height", 4.5),
    ("preprocess", "roi", [0.0, math.nan, 1.0, 1.0]),
    (None, "threshold", math.nan),
    (None, "threshold", -0.3),
    # values that passed before and broke the daemon later: a threshold so small that scores
    # divided by it are infinite, a number of 400 digits (a traceback at start), a number
    # written as a string, a watched region one pixel wide
    ("adaptation", "threshold", 5e-324),
    ("adaptation", "early_threshold", 5e-324),
    ("adaptation", "guard", 10**400),
    (None, "threshold", 10**400),
    (None, "threshold", "0.172"),
    ("preprocess", "roi", [0.0, 0.5, 1e-9, 1.0]),
    # a start kept in memory far past the daemon's budget (5000 frames of the shipped
    # 128x64 input: about 200 MB per printer)
    ("adaptation", "frames", 5000),
    # provenance that calibrate reads: not an object was a traceback there
    (None, "data", []),
    (None, "extra", "notes"),
]


# values of the wrong kind: refused in the owner's words, not Python's ("'int' object is not
# iterable", "object of type 'NoneType' has no len()", "invalid literal for int()")
WRONG_KIND = [
    (None, "input_shape", 5),
    (None, "input_shape", "1,64,128,3"),
    (None, "input_shape", [1, 64.7, 128, 3]),
    (None, "output_shape", [[1, 64], [128, 3]]),
    (None, "output_shape", [1, 64, True, 3]),
    ("preprocess", "roi", None),
    ("preprocess", "roi", "0 0 1 1"),
    (None, "scoring", None),  # a whole section: "must be an object, got NoneType"
    (None, "adaptation", [1, 2]),
]
PYTHONS_WORDS = ("object", "iterable", "NoneType", "int()", "literal", "np.", "argument")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    BAD + WRONG_KIND,
    ids=[f"{s or ''}.{k}={v!r}" for s, k, v in BAD + WRONG_KIND],
)
def test_out_of_range_or_non_finite_values_are_refused_naming_the_key(
    tmp_path, section, key, value
) -> None:
    folder = bundle_with(tmp_path, section, key, value)
    with pytest.raises(BundleError) as err:
        Bundle.load(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder / "model.json") in message
    assert (f"{section}.{key}" if section else key) in message, message
    if (section, key, value) in WRONG_KIND:
        assert not any(word in message for word in PYTHONS_WORDS), message


@pytest.mark.parametrize("kind", ["empty", "fifo", "folder", "link_loop"])
def test_a_model_file_that_is_empty_or_not_a_file_says_so(tmp_path, kind) -> None:
    """An empty model.tflite was "`model_path` or `model_content` must be specified" (the
    runtime's words); a FIFO or a folder in its place "model file missing"."""
    folder = bundle_with(tmp_path, None, "extra", {})
    model = folder / "model.tflite"
    model.unlink()
    {
        "empty": lambda: model.write_bytes(b""),
        "fifo": lambda: os.mkfifo(model),
        "folder": model.mkdir,
        "link_loop": lambda: model.symlink_to(model.name),
    }[kind]()
    with pytest.raises(BundleError) as err:
        Bundle.load(folder)
    said = {
        "empty": "empty file",
        "fifo": "not a regular file",
        "folder": "not a regular file",
        "link_loop": "a link to no file",
    }
    assert str(err.value).startswith(f"{model}: {said[kind]}"), str(err.value)


def test_the_shipped_bundle_still_loads() -> None:
    assert Bundle.load(default_bundle_path()).meta.threshold > 0


def test_a_number_of_thousands_of_digits_is_refused_in_the_users_words(tmp_path) -> None:
    """Python's own advice came out ("use sys.set_int_max_str_digits() to increase the
    limit"), meaningless to whoever copied the bundle."""
    folder = bundle_with(tmp_path, None, "extra", {})
    (folder / "model.json").write_text('{"format_version": ' + "9" * 5000 + "}")
    with pytest.raises(BundleError) as err:
        Bundle.load(folder)
    assert "thousands of digits" in str(err.value) and "sys." not in str(err.value)


def test_a_deeply_nested_model_json_is_refused_not_a_crash(tmp_path) -> None:
    folder = bundle_with(tmp_path, None, "extra", {})
    (folder / "model.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        Bundle.load(folder)


def _config_with(tmp_path: Path, bundle: Path) -> Path:
    """A config of one printer watching ``bundle``, nothing else on (no MQTT, no page)."""
    return write_config(
        tmp_path / "config.yaml",
        model=str(bundle),
        mqtt={"host": ""},
        http={"listen": ""},
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "p1", "camera": {"source": str(tmp_path)}}],
    )


def fifo_instead_of(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def test_a_fifo_as_model_json_is_refused_at_once_by_check_config_and_the_daemon(tmp_path) -> None:
    folder = bundle_with(tmp_path, None, "extra", {})
    fifo_instead_of(folder / "model.json")
    config = _config_with(tmp_path, folder)
    for command in ("check-config", "run"):
        try:
            proc = run_cli(command, "--config", str(config), timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{command} hangs on a FIFO as model.json")
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip().splitlines()[-1]
            == f"error: {config}: model: {folder / 'model.json'}: not a regular file"
        )


def test_a_fifo_as_the_config_file_is_refused_at_once(tmp_path) -> None:
    config = fifo_instead_of(tmp_path / "config.yaml")
    try:
        proc = run_cli("check-config", "--config", str(config), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("check-config hangs on a FIFO as config")
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr


def test_a_model_file_overwritten_in_place_does_not_change_the_running_model(
    tmp_path: Path,
) -> None:
    """Copying a new model over the one a daemon runs (scp into the bundle's folder): the
    running model is the one it loaded, whatever the file holds now (a half-written file
    mapped in memory ended the process with a bus error)."""
    import sys

    folder = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), folder)
    script = f"""
import numpy as np
from pathlib import Path
from watchdog.detection.bundle import Bundle
from watchdog.detection.model import FrameScorer
scorer = FrameScorer(Bundle.load(Path({str(folder)!r})))
frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
before = scorer.score(frame)
model = Path({str(folder)!r}) / "model.tflite"
data = model.read_bytes()
with open(model, "r+b") as f:  # in place, as cp does: the same file, half of it rewritten
    f.truncate(len(data) // 3)
print(before == scorer.score(frame))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_a_number_of_thousands_of_digits_is_refused_in_one_line(tmp_path) -> None:
    """Python refuses to read an integer of more than 4300 digits with a ValueError of its
    own, which went past the bundle's checks: a traceback at start, in check-config and score."""
    folder = bundle_with(tmp_path, None, "extra", {})
    text = (folder / "model.json").read_text()
    (folder / "model.json").write_text(text.replace('"extra": {}', '"extra": ' + "9" * 5000))
    with pytest.raises(BundleError) as err:
        Bundle.load(folder)
    assert "\n" not in str(err.value) and str(folder / "model.json") in str(err.value)


def test_an_unknown_key_holding_a_line_break_cannot_write_a_line_of_its_own(tmp_path) -> None:
    """The refusal names the key; a key with a line break in it would have forged a second log
    line ("... INFO watchdog: reloaded")."""
    folder = bundle_with(tmp_path, "scoring", "x\n2026-12-03 INFO watchdog: reloaded", 1)
    with pytest.raises(BundleError, match="unknown key") as err:
        Bundle.load(folder)
    assert "\n" not in str(err.value), str(err.value)


def test_a_model_file_far_too_large_is_refused_before_it_is_read_whole(tmp_path) -> None:
    """A wrong file copied in as model.tflite (a video, a disk image) was read whole into
    memory: the systemd unit's memory limit would kill the daemon at every start. The same
    model padded past the limit is refused by check-config and the daemon, in one line."""
    from watchdog.detection.bundle import MAX_MODEL_BYTES

    folder = bundle_with(tmp_path, None, "extra", {})
    with open(folder / "model.tflite", "r+b") as f:
        f.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk used
    config = _config_with(tmp_path, folder)
    for command in ("check-config", "run"):
        proc = run_cli(command, "--config", str(config), timeout=60)
        assert proc.returncode == 2, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        said = f"error: {config}: model: {folder / 'model.tflite'}: more than 64 MB"
        assert last.startswith(said), last


def test_a_bundle_or_camera_folder_this_user_cannot_reach_is_a_one_line_refusal(
    tmp_path, monkeypatch
) -> None:
    """Python 3.11's ``Path.is_dir`` raises on a folder the service's user may not enter (under
    /home with ProtectHome=yes, or mode 000): the refused reload said ``PermissionError``.
    Raised here by patching ``is_dir``, as the tests run as root, whom no mode stops."""
    from watchdog.config import CameraConfig
    from watchdog.devices.capture import CameraSourceError, open_camera

    def refused(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", refused)
    with pytest.raises(BundleError, match="not readable by this user.*ProtectHome"):
        Bundle.load(tmp_path / "bundle")
    with pytest.raises(CameraSourceError, match="not readable by this user.*ProtectHome"):
        open_camera(CameraConfig(source=str(tmp_path / "frames")))


def test_a_linked_model_json_is_rewritten_where_it_points(tmp_path) -> None:
    """An owner who keeps model.json elsewhere and links it into the bundle: saving the
    bundle (calibrate) changes their copy, and the link stays a link."""
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    kept = tmp_path / "kept" / "model.json"
    kept.parent.mkdir()
    (bundle / "model.json").rename(kept)
    (bundle / "model.json").symlink_to(kept)
    loaded = Bundle.load(bundle)
    loaded.meta.threshold = 0.25
    loaded.save_meta()
    assert (bundle / "model.json").is_symlink()
    assert json.loads(kept.read_text())["threshold"] == 0.25
    assert Bundle.load(bundle).meta.threshold == 0.25


def test_a_bundle_of_an_earlier_trainer_loads_without_a_setting_since_removed(tmp_path) -> None:
    """A bundle trained while the watchdog could follow the print's recent frames (its
    model.json holds adaptation.follow, off) was refused as "a bundle of a newer trainer?
    update this watchdog", told to the owner who had just updated. Off, it is left out; on, it
    is refused saying the setting is gone and what to do."""
    off = bundle_with(tmp_path / "off", "adaptation", "follow", 0)
    assert Bundle.load(off).meta.adaptation is not None
    # the config's camera: a folder of frames
    cv2.imwrite(str(tmp_path / "frame.jpg"), np.full((48, 64, 3), 128, np.uint8))
    config = _config_with(tmp_path, off)
    r = run_cli("check-config", "--config", str(config), timeout=120)
    assert r.returncode == 0, r.stderr
    on = bundle_with(tmp_path / "on", "adaptation", "follow", 30)
    with pytest.raises(BundleError) as err:
        Bundle.load(on)
    said = str(err.value)
    assert "adaptation.follow 30 is a setting this watchdog no longer has" in said, said
    assert "train the bundle again" in said and "newer trainer" not in said
