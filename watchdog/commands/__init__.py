"""One module per `python -m watchdog` sub-command: each has add_parser(subparsers)."""

from __future__ import annotations

from watchdog.config import Config, PrinterConfig
from watchdog.errors import UsageError


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
