"""`python -m watchdog run`: the daemon (systemd runs this)."""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="watch the configured printers until stopped (SIGTERM); SIGHUP reloads"
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.set_defaults(func=main)


MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed


def tune_malloc(arenas: int = 2) -> None:
    """Keep glibc's heap from holding frame buffers the daemon has freed.

    - glibc gives every thread that allocates its own malloc arena, and an arena keeps freed
      frame buffers resident: with one watcher thread per printer that is megabytes per
      printer. The daemon mostly waits, so two arenas serve it.
    - glibc raises its mmap threshold to the size of the largest block freed, so after the
      first frame every frame-sized buffer (0.9 MB at 640x480) comes from the heap, which keeps
      it after use. A fixed threshold gives such buffers back when they are freed.

    Measured by benchmarks/memory.py. Before any thread starts; MALLOC_ARENA_MAX and
    MALLOC_MMAP_THRESHOLD_ in the environment win; nothing to do off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(-8, arenas)  # -8: M_ARENA_MAX
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def main(args: argparse.Namespace) -> int:
    # systemd's watchdog kills a hung daemon with SIGABRT: the journal then shows where each
    # of its threads was (so does a crash in a native library)
    faulthandler.enable()
    tune_malloc()
    from watchdog.daemon import Daemon

    return Daemon(args.config, debug=args.debug).run()
