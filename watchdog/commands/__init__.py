"""One module per `python -m watchdog` sub-command: each has add_parser(subparsers)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from watchdog.config import Config, PrinterConfig
from watchdog.errors import UsageError
from watchdog.redact import redact_url, secret_filter


def pick_printer(config: Config, name: str | None) -> PrinterConfig:
    """The printer ``--printer NAME`` names (the first when None); UsageError listing them."""
    if name is None:
        return config.printers[0]
    for p in config.printers:
        if p.name == name:
            return p
    raise UsageError(
        f"--printer {name}: no such printer in the config ({', '.join(p.name for p in config.printers)})"
    )


def shown_source(p: PrinterConfig) -> str:
    """A printer's camera source as a command prints it: a URL without its password or query,
    and every secret the config named masked (a token in the path from a ``${NAME}``)."""
    s = p.camera.source
    shown = redact_url(s) if isinstance(s, str) and "://" in s else str(s)
    return secret_filter.mask(shown)


N = TypeVar("N", int, float)


def number(kind: type[N], lowest: N, highest: N | None = None) -> Callable[[str], N]:
    """An argparse type: a finite ``kind`` from ``lowest`` (to ``highest``), refused in one line
    that says what to give (``--wait-s: '-5': give a number of at least 1``)."""
    whole = "whole " if kind is int else ""
    wanted = f"of at least {lowest:g}" if highest is None else f"from {lowest:g} to {highest:g}"

    def parse(value: str) -> N:
        try:
            parsed = kind(value)
        except ValueError:
            parsed = None
        if (
            parsed is None
            or not math.isfinite(parsed)
            or parsed < lowest
            or (highest is not None and parsed > highest)
        ):
            raise argparse.ArgumentTypeError(f"{value!r}: give a {whole}number {wanted}")
        return parsed

    return parse
