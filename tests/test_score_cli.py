"""`python -m watchdog score`: its errors are one line and exit code 2; no TensorFlow imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests import synth

ROOT = Path(__file__).resolve().parents[1]


def _score(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "score", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), synth.normal_frame())
    return path


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert proc.stdout == ""


def test_missing_bundle(tmp_path: Path, image: Path) -> None:
    _one_line_error(_score("--model", str(tmp_path / "nope"), str(image)), str(tmp_path / "nope"))


def test_corrupt_bundle_metadata(tiny_bundle: Path, tmp_path: Path, image: Path) -> None:
    broken = tmp_path / "b"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.json").write_text("[1, 2")
    _one_line_error(_score("--model", str(broken), str(image)), "model.json")


def test_corrupt_model_file(tiny_bundle: Path, tmp_path: Path, image: Path) -> None:
    broken = tmp_path / "b"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.tflite").write_bytes(b"garbage")
    _one_line_error(_score("--model", str(broken), str(image)), "model.tflite")


def test_a_bad_image_is_reported_and_the_others_still_scored(
    tiny_bundle: Path, tmp_path: Path, image: Path
) -> None:
    from tests.plugins.camera import bomb_png

    bad, gone, bomb = tmp_path / "bad.jpg", tmp_path / "gone.png", tmp_path / "bomb.png"
    bad.write_bytes(b"nope")
    bomb.write_bytes(bomb_png(50_000, 50_000))  # OpenCV itself raises on this one
    proc = _score("--model", str(tiny_bundle), str(bad), str(image), str(gone), str(bomb))
    assert proc.returncode == 1, proc.stderr
    assert [json.loads(line)["file"] for line in proc.stdout.splitlines()] == [str(image)]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, proc.stderr  # one per bad file, then the summary
    assert str(bad) in errors[0] and "not a JPEG or PNG" in errors[0]
    assert str(gone) in errors[1] and "cannot read" in errors[1]
    assert str(bomb) in errors[2] and "declares 50000x50000 pixels" in errors[2]
    assert "3 of 4 image(s)" in errors[3]
    assert "Traceback" not in proc.stderr


def test_scores_grey_and_alpha_images_without_tensorflow(tiny_bundle: Path, tmp_path: Path) -> None:
    frame = synth.normal_frame(0, 4, 16, 0)
    grey, alpha = tmp_path / "grey.png", tmp_path / "alpha.png"
    cv2.imwrite(str(grey), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(alpha), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    code = (
        "import sys\n"
        "sys.argv = ['watchdog', 'score', '--model', sys.argv[1], sys.argv[2], sys.argv[3]]\n"
        "from watchdog.__main__ import main\n"
        "rc = main(sys.argv[1:])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "print('HEAVY', bad)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tiny_bundle), str(grey), str(alpha)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    *lines, heavy = proc.stdout.strip().splitlines()
    assert heavy == "HEAVY []"
    results = [json.loads(line) for line in lines]
    assert [r["file"] for r in results] == [str(grey), str(alpha)]
    assert all(set(r) == {"file", "score", "threshold", "anomalous"} for r in results)
    assert all(r["score"] >= 0 for r in results)


def test_a_jpeg_with_padding_after_its_end_is_scored_as_the_daemon_reads_it(
    tiny_bundle: Path, tmp_path: Path, image: Path
) -> None:
    """Zeros after the end-of-image marker (a copy tool's padding): the daemon's camera reads
    such a frame, and so must the tools that score and train on saved frames."""
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(image.read_bytes() + b"\x00" * 200)
    proc = _score("--model", str(tiny_bundle), str(padded))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["file"] == str(padded)
