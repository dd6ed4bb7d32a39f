"""Loading a bundle: every broken bundle is refused with a message naming the file and the fault."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from watchdog.detection.bundle import (
    META_FILE,
    MODEL_FILE,
    Bundle,
    BundleError,
    default_bundle_path,
)
from watchdog.detection.model import FrameScorer


@pytest.fixture()
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dest)
    return dest


def _edit_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    for key, value in changes.items():
        target = meta
        *path, last = key.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    (folder / META_FILE).write_text(json.dumps(meta))


def test_the_trained_bundle_loads_and_runs(bundle_copy: Path) -> None:
    bundle = Bundle.load(bundle_copy)
    scorer = FrameScorer(bundle)
    assert scorer.threshold > 0
    assert bundle.meta.input_shape == (1, 48, 64, 3)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="folder not found"):
        Bundle.load(tmp_path / "nope")


def test_missing_model_file(bundle_copy: Path) -> None:
    (bundle_copy / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=MODEL_FILE):
        Bundle.load(bundle_copy)


def test_missing_metadata(bundle_copy: Path) -> None:
    (bundle_copy / META_FILE).unlink()
    with pytest.raises(BundleError, match="metadata file missing"):
        Bundle.load(bundle_copy)


def test_bad_json(bundle_copy: Path) -> None:
    (bundle_copy / META_FILE).write_text("{ not json")
    with pytest.raises(BundleError, match=f"{META_FILE}: unreadable"):
        Bundle.load(bundle_copy)


def test_wrong_format_version(bundle_copy: Path) -> None:
    _edit_meta(bundle_copy, format_version=99)
    with pytest.raises(BundleError, match="format_version 99"):
        Bundle.load(bundle_copy)


def test_not_a_bundle(bundle_copy: Path) -> None:
    _edit_meta(bundle_copy, format="something-else")
    with pytest.raises(BundleError, match="not a printer-watchdog bundle"):
        Bundle.load(bundle_copy)


def test_unknown_key_from_a_newer_trainer(bundle_copy: Path) -> None:
    _edit_meta(bundle_copy, scoring__shiny_new_option=1)
    with pytest.raises(BundleError, match="shiny_new_option"):
        Bundle.load(bundle_copy)


def test_bad_threshold(bundle_copy: Path) -> None:
    _edit_meta(bundle_copy, threshold=-1)
    with pytest.raises(BundleError, match="threshold"):
        Bundle.load(bundle_copy)


def test_input_shape_disagrees_with_preprocess(bundle_copy: Path) -> None:
    _edit_meta(bundle_copy, input_shape=[1, 96, 128, 3])
    with pytest.raises(BundleError, match="does not match preprocess"):
        Bundle.load(bundle_copy)


def test_model_file_disagrees_with_metadata(bundle_copy: Path) -> None:
    _edit_meta(
        bundle_copy,
        preprocess__width=128,
        preprocess__height=96,
        input_shape=[1, 96, 128, 3],
        output_shape=[1, 96, 128, 3],
    )
    bundle = Bundle.load(bundle_copy)  # consistent on paper
    with pytest.raises(BundleError, match="does not match"):
        FrameScorer(bundle)


def test_garbage_model_file(bundle_copy: Path) -> None:
    (bundle_copy / MODEL_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(BundleError, match="not a TFLite model this watchdog can load"):
        FrameScorer(Bundle.load(bundle_copy))


def test_a_bundle_fitted_on_one_print_says_so_its_resumed_part_included() -> None:
    """A print paused and resumed is one print in two recordings: a bundle fitted on it was
    taken for one of two prints, its thresholds set on its own frames without a word."""
    meta = Bundle.load(default_bundle_path()).meta
    assert meta.cautions() == []
    meta.data = {**meta.data, "sessions": {"fit": ["benchy", "benchy+resumed1"]}}
    [caution] = meta.cautions()
    assert caution.startswith("fitted on one print: its thresholds were set on that print's")
