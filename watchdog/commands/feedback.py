"""`python -m watchdog feedback`: tell the watchdog whether an incident was a real failure.

The command-line twin of the MQTT topic ``<prefix>/<printer>/feedback``. A false alarm
(``--verdict not_failure``) has its frame copied into
``<storage.dir>/collected/<printer>/false_alarms/``, so the next ``python -m trainer
--normal <storage.dir>/collected`` learns that this scene is normal; a real one
(``--verdict failure``) has its frames copied into
``<storage.dir>/collected/<printer>/failures/``, which the same ``--normal`` reads as
failures, as the dashboard's and MQTT's "Confirm failure" do. The verdict is written into the incident's alert.json, marked as the command line's: a running daemon whose
latest alert (of the print under way) it answers carries it out at its next frame, as it does
the page's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from watchdog.config import load_config
from watchdog.errors import UsageError
from watchdog.incidents import (
    VERDICTS,
    CopyNotTakenBack,
    FramesNotKept,
    IncidentError,
    collected_dir,
    mark_failure,
    mark_not_failure,
)
from watchdog.storage_lock import refuse_as_root_in_a_users_folder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback",
        help="mark an incident as a false alarm (its frame joins the normal set) or a real failure",
    )
    p.add_argument(
        "--config", required=True, help="YAML config file (for storage.dir and the printers)"
    )
    p.add_argument("--printer", required=True, help="printer name as in the config")
    p.add_argument(
        "--incident", required=True, help="incident id, as in the alert's `incident` field"
    )
    p.add_argument("--verdict", required=True, choices=VERDICTS, help="not_failure or failure")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # ConfigError → one line, exit 2
    names = [p.name for p in config.printers]
    if args.printer not in names:
        raise UsageError(
            f"--printer {args.printer!r} is not in {args.config} (printers: {', '.join(names)})"
        )
    storage = config.storage.dir
    refuse_as_root_in_a_users_folder(storage)
    # said after the verdict is recorded, outside its try: a standard output that cannot be
    # written (a closed pipe, a full disk) is not the storage folder failing
    try:
        said = _judge(storage, args.printer, args.incident, args.verdict)
    except FramesNotKept as exc:  # the verdict stands; the retraining set lacks its frames
        print(
            f"incident {args.incident} of {args.printer}: verdict recorded, but {exc}",
            file=sys.stderr,
        )
        return 1
    except CopyNotTakenBack as exc:
        print(
            f"incident {args.incident} of {args.printer}: verdict not changed: {exc}",
            file=sys.stderr,
        )
        return 1
    except IncidentError as exc:
        raise UsageError(f"--incident: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"{storage}: cannot record the verdict: {exc.strerror or exc}") from exc
    if said is None:  # the daemon pruned the incident as the verdict landed
        print(
            f"incident {args.incident} of {args.printer} marked a real failure, but its "
            "frames were removed meanwhile (the oldest alerts are pruned)",
            file=sys.stderr,
        )
        return 1
    print(said)
    return 0


def _judge(storage: Path, printer: str, incident: str, verdict: str) -> str | None:
    """Record the verdict and keep its frames; what to tell the owner (None: a failure whose
    frames were pruned meanwhile)."""
    retrain_on = shlex.quote(str(collected_dir(storage)))  # the README's, all printers' frames
    if verdict == "not_failure":
        frame = mark_not_failure(storage, printer, incident, source="cli")
        return (
            f"incident {incident} of {printer} marked not a failure; its frame is in {frame}\n"
            f"retrain with: python -m trainer --normal {retrain_on} ..."
        )
    copies = mark_failure(storage, printer, incident, source="cli")
    if not copies:
        return None
    return (
        f"incident {incident} of {printer} marked a real failure; "
        f"{len(copies)} frame(s) in {copies[0].parent}\n"
        f"retrain with: python -m trainer --normal {retrain_on} ..."
    )
