"""Paths as the committed results record them: relative to the repository, so that a result
says where its data and model were wherever it was run (``../shared/data/...``,
``watchdog/models/default``), not one machine's folders."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shown(path: str | Path) -> str:
    """``path`` relative to the repository (with ``..`` where it is beside it)."""
    return os.path.relpath(Path(path).resolve(), ROOT)
