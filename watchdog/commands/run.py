"""`python -m watchdog run`: the daemon (systemd runs this)."""

from __future__ import annotations

import argparse
import ctypes
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="watch the configured printers until stopped (SIGTERM); SIGHUP reloads"
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.set_defaults(func=main)


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own malloc arena, and an arena keeps freed
    frame buffers resident: with one watcher thread per printer that is megabytes per printer.
    The daemon mostly waits, so two arenas serve it (benchmarks/memory.py). Before any thread
    starts; MALLOC_ARENA_MAX in the environment wins; nothing to do off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main(args: argparse.Namespace) -> int:
    fewer_malloc_arenas()
    from watchdog.daemon import Daemon

    return Daemon(args.config, debug=args.debug).run()
