"""`python -m watchdog run`: the daemon (systemd runs this)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="watch the configured printers until stopped (SIGTERM); SIGHUP reloads")
    p.add_argument("--config", required=True, help="YAML config file")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from watchdog.daemon import Daemon

    return Daemon(args.config, debug=args.debug).run()
