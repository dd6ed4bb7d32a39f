"""docs/quality.md is generated from the committed benchmark results, never typed by hand."""

from __future__ import annotations

from benchmarks import qualitydoc


def test_quality_page_is_current_with_the_committed_results() -> None:
    assert qualitydoc.OUTPUT.read_text() == qualitydoc.render(), (
        "docs/quality.md is stale: run .venv/bin/python benchmarks/qualitydoc.py"
    )
