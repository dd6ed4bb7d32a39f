"""`python -m watchdog check-config`: validate a config and print it resolved, secrets masked."""

from __future__ import annotations

import argparse
import sys

import yaml

from watchdog.detection.bundle import Bundle, default_bundle_path
from watchdog.overrides import load_effective_config, origins


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a config file and print it resolved (secrets masked)")
    p.add_argument("--config", required=True, help="YAML config file")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = load_effective_config(args.config)  # ConfigError → one line, exit 2
    bundle = Bundle.load(config.model or default_bundle_path())  # BundleError → one line, exit 2
    resolved = config.masked()
    resolved["model"] = str(bundle.path)
    yaml.safe_dump(resolved, sys.stdout, sort_keys=False)
    for origin in origins(config):
        print(f"# {origin.key}: from the dashboard ({origin.file}); \"reset to the config file\" there removes it",
              file=sys.stderr)
    print(f"# ok: {len(config.printers)} printer(s); model threshold {bundle.meta.threshold:.6g}", file=sys.stderr)
    return 0
