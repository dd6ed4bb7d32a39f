"""`python -m watchdog check-config`: validate a config, run its model once, print it resolved.

Catches at check time what would otherwise fail at run time: a model whose file disagrees with
its model.json (it is loaded and run on one frame), an action the printer cannot take; with
``--probe``, a camera that gives no frame, a printer API that does not answer and an MQTT broker
that cannot be reached or refuses the connection.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from watchdog import switches
from watchdog.commands import shown_source
from watchdog.comms.http import not_here
from watchdog.comms.notify import APPRISE_MISSING, apprise_installed
from watchdog.comms.notify_send import NOT_UNDERSTOOD, understood
from watchdog.comms.transport import check_tls, probe_broker
from watchdog.config import Config, ConfigError, PrinterConfig
from watchdog.daemon import configured_bundle, model_key, printer_start_cautions, try_model_once
from watchdog.detection.bundle import Bundle, BundleError, BundleMeta
from watchdog.devices.capture import CameraSourceError, open_camera, redact_url, source_problem
from watchdog.devices.printers import make_printer
from watchdog.overrides import Origin, config_mask_check, load_starting_config, origins
from watchdog.printing import PrinterState
from watchdog.redact import secret_filter
from watchdog.storage_lock import why_unwritable
from watchdog.watcher import detector_for

PROBE_STATES = ("printing", "paused", "idle")  # a printer API that answers says one of these


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a config file, run its model once and print it resolved (secrets masked)",
        description="Validate a config file, load and run its model once, warn about settings that cannot "
        "work, and print the config resolved with secrets masked. --probe also fetches one frame "
        "from each camera, asks each printer API for its state and connects to the MQTT broker.",
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument(
        "--probe",
        action="store_true",
        help="fetch one frame from each camera, query each printer's API and connect to the MQTT "
        "broker; exit 1 naming what failed",
    )
    p.add_argument(
        "--no-model-run",
        action="store_true",
        help="read the model's model.json but do not run the model (the installer's check of a "
        "new version against the libraries installed before it)",
    )
    p.set_defaults(func=main)


def warnings(config: Config) -> list[str]:
    """Settings that validate but cannot do what they say, one line each."""
    unusable = why_unwritable(config.storage.dir)
    off = switches.switched_off(config.storage.dir) if unusable is None else frozenset()
    out = _printer_warnings(config, off)
    if unusable is not None:
        out.append(
            f"storage.dir {config.storage.dir}: {unusable}: incidents, queued alerts and saved "
            "settings would not be kept (the print is still watched and paused)"
        )
    if config.http.listen and not_here(config.http.listen):
        out.append(
            f"http.listen {config.http.listen}: no network of this machine has that address now "
            "(a network not up yet, or a mistyped address): the page and the phone's buttons "
            "answer only once one has it"
        )
    if config.notify and not apprise_installed():
        out.append(
            f"notify lists {len(config.notify)} target(s), but {APPRISE_MISSING}; until it is, "
            "each notification waits in the storage folder's outbox, for its target's "
            "max_age_h (24 h by default)"
        )
    elif config.notify:
        out += [
            f"notify.{i}.url ({t.name or t.scheme}): {NOT_UNDERSTOOD}: its notifications would "
            "never be sent"
            for i, t in enumerate(config.notify)
            if t.url is not None and not understood(t.url.get_secret_value())
        ]
    if config.mqtt.host and config.mqtt.password is not None and not config.mqtt.username:
        out.append(
            "mqtt.password is set without mqtt.username: it is not sent (MQTT sends a password "
            "with a user name only); set mqtt.username, or leave the password out"
        )
    if not config.mqtt.host and not config.notify:
        out.append(
            "mqtt.host is empty and notify lists no target: an alert reaches nobody, it is only "
            "written to the storage folder (and paused where action: pause has a printer API); set "
            "mqtt.host or add a notify target to hear of it"
        )
    return out


def _printer_warnings(config: Config, off: frozenset[str]) -> list[str]:
    """Each printer's settings that validate but cannot do what they say (``off``: the
    printers whose Watching switch is off)."""
    out = []
    for i, p in enumerate(config.printers):
        if p.name in off:
            out.append(
                f"printers.{i} ({p.name}): not watched: its Watching switch was turned off on the "
                f"dashboard or in Home Assistant (kept in {config.storage.dir / switches.FILE}); "
                "turn it on there to have its prints watched"
            )
        if not p.camera.given("source"):
            out.append(
                f"printers.{i} ({p.name}): camera.source not set: the first USB camera "
                "(/dev/video0) is watched; give its URL, device or folder there"
            )
        if p.action in ("pause", "cancel") and p.api.kind == "none":
            out.append(
                f"printers.{i} ({p.name}): action: {p.action} needs a printer API, but api.kind is none: "
                f"it will only notify; set api.kind (octoprint or moonraker) and api.url, or action: notify"
            )
        elif p.action == "notify" and p.api.kind != "none":
            out.append(
                f"printers.{i} ({p.name}): action: notify with a printer API: a failure is "
                f"reported, never paused; set action: pause to have the print paused"
            )
    return out


def run_model(config: Config, bundle: Bundle, source: str | Path = "config") -> None:
    """The model tried as the daemon tries it at start (``try_model_once``: what one passes,
    the other passes), then each printer's detector built as its watcher will (``detector_for``:
    a refused mask is a ConfigError naming its key) and one frame scored."""
    try_model_once(bundle, model_key(config, source))
    pre = bundle.meta.preprocess
    frame = np.full((max(pre.height, 64) * 2, max(pre.width, 64) * 2, 3), 128, np.uint8)
    for p in config.printers:
        try:
            detector_for(p, bundle).observe(frame)
        except BundleError:
            raise
        except (ValueError, RuntimeError) as exc:
            raise BundleError(
                f"model {bundle.path}: fails on a frame of printer {p.name} ({exc})"
            ) from exc


def probe_camera(p: PrinterConfig) -> tuple[bool, str]:
    """One frame from the camera within its timeout (plus a few seconds for a stream to open)."""
    stop = threading.Event()
    try:
        camera = open_camera(p.camera, stop, name=p.name, backoff=(0.5, 1.0))
    except CameraSourceError as exc:
        return False, str(exc)
    deadline = time.monotonic() + p.camera.timeout_s + 5.0
    # the probe's own line says why it failed; the camera's "offline ...; retrying with
    # backoff" said, beside it, that it goes on trying
    said = logging.getLogger("watchdog.devices.capture")
    level = said.level
    said.setLevel(logging.ERROR)
    try:
        while time.monotonic() < deadline:
            frame = camera.read()
            if frame is not None:
                return True, f"{frame.shape[1]}x{frame.shape[0]} frame"
            if (
                camera.exhausted or camera.last_error
            ):  # one honest try: the first failure is the answer
                break
            time.sleep(0.2)
        return False, camera.last_error or f"no frame within {p.camera.timeout_s:g} s"
    finally:
        said.setLevel(level)
        stop.set()
        camera.close()


def probe_printer(p: PrinterConfig) -> tuple[bool, str]:
    """The printer's state through its API (kind none: nothing to ask)."""
    if p.api.kind == "none":
        return True, "none configured (api.kind: none): nothing to query"
    status = make_printer(p.api, threading.Event()).status()
    if status.state == PrinterState.OFFLINE:  # no answer at all, or one saying the printer is off
        if re.search(r"\bHTTP 404\b", status.detail):  # something answers, not this API
            return False, (
                f"the server answers, but not as {p.api.kind} does: {status.detail}; check "
                "api.kind and api.url"
            )
        return False, f"offline: {status.detail or 'no answer'}"
    detail = f" ({status.detail})" if status.detail else ""
    if status.cannot_act and p.action != "notify":
        return False, f"{p.api.kind} says {status.state}{detail}, but {status.cannot_act}"
    return status.state in PROBE_STATES, f"{p.api.kind} says {status.state}{detail}"


def probe(config: Config) -> list[str]:
    """Each camera and printer API once, and the MQTT broker; one line per check, the
    failures returned."""
    failed = []
    if config.mqtt.host:
        ok, detail = probe_broker(config.mqtt)
        line = secret_filter.mask(
            f"MQTT broker {config.mqtt.host}:{config.mqtt.port}: {'ok' if ok else 'FAILED'}: "
            f"{detail}"
        )
        print(f"# {line}", file=sys.stderr)
        if not ok:
            failed.append(line)
    for p in config.printers:
        api = "printer API" if p.api.kind == "none" else f"{p.api.kind} API {redact_url(p.api.url)}"
        for what, check in ((f"camera {shown_source(p)}", probe_camera), (api, probe_printer)):
            ok, detail = check(p)
            # masked whole: a secret named by the config may sit anywhere in a URL or a reason
            line = secret_filter.mask(
                f"printer {p.name}: {what}: {'ok' if ok else 'FAILED'}: {detail}"
            )
            print(f"# {line}", file=sys.stderr)
            if not ok:
                failed.append(line)
    return failed


def applied_origins(config: Config) -> list[Origin]:
    """The page's saved settings in force: a printer's left out (warned of) are not."""
    try:
        saved = origins(config)
    except ConfigError:  # the file unreadable: said above, nothing of it applied
        return []
    in_force = {
        f"printers.{p.name}.detection.{key}": _canonical(value)
        for p in config.printers
        for key, value in p.detection.model_dump().items()
    }
    return [o for o in saved if in_force.get(o.key) == _canonical(o.value)]


def _canonical(value: object) -> str:
    """A setting as JSON, numbers as floats: the file's 1 is the schema's 1.0."""

    def floats(v: object) -> object:
        if isinstance(v, (list, tuple)):
            return [floats(x) for x in v]
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    return json.dumps(floats(value), sort_keys=True)


def main(args: argparse.Namespace) -> int:
    # as the daemon starts: the config file (ConfigError → one line, exit 2) and the page's
    # saved settings where they apply; those it would leave out are warnings, not a refusal
    # (the installer's check of a new version must not refuse what the daemon would run)
    config, left_out = load_starting_config(args.config, config_mask_check)
    for why in left_out:
        print(f"warning: {secret_filter.mask(why)}", file=sys.stderr)
    check_tls(config.mqtt, args.config)  # one line, exit 2: the daemon would not start on them
    bundle = configured_bundle(config, args.config)  # BundleError → one line, exit 2
    if not args.no_model_run:
        run_model(config, bundle, args.config)
    # after the model, as the daemon opens the cameras after loading it: the same first error
    for i, p in enumerate(config.printers):  # refused by the daemon at start: exit 2 here too
        if problem := source_problem(p.camera):
            where = f"{args.config}: printers.{i}.camera.source"
            raise CameraSourceError(p.camera.source, problem).at(where)
    resolved = config.masked()
    resolved["model"] = str(bundle.path)
    yaml.safe_dump(resolved, sys.stdout, sort_keys=False)
    for origin in applied_origins(config):
        print(
            f'# {origin.key}: from the dashboard ({origin.file}); "reset to the config file" there removes it',
            file=sys.stderr,
        )
    for line in warnings(config):
        print(f"warning: {line}", file=sys.stderr)
    for caution in bundle.meta.cautions():
        print(f"warning: model {bundle.path}: {caution}", file=sys.stderr)
    for caution in printer_start_cautions(bundle.meta, config.printers):
        print(f"warning: {caution}", file=sys.stderr)
    if args.probe:
        failed = probe(config)
        if failed:
            print(f"error: {len(failed)} probe(s) failed: {'; '.join(failed)}", file=sys.stderr)
            return 1
    ran = "read" if args.no_model_run else "loaded and run once"
    print(
        f"# ok: {len(config.printers)} printer(s); model {bundle.path} {ran}, "
        f"{_how_judged(bundle.meta)}",
        file=sys.stderr,
    )
    return 0


def _how_judged(meta: BundleMeta) -> str:
    """The threshold as the owner sees it (the dashboard's and replay's scores are on the
    bundle's scale), and what it is measured against: a print's own start, where it is."""
    adaptation = meta.adaptation
    if not adaptation.enabled:
        return f"threshold {meta.threshold:.6g} (each frame on its own)"
    # the thresholds that decide, each named as in model.json: an edit to one of them was
    # not seen anywhere (the scale above stays whatever they are)
    start = (
        f", its frames {adaptation.early_frames + 1}-{adaptation.frames} against its first "
        f"{adaptation.early_frames} at adaptation.early_threshold {adaptation.early_threshold:.4g}"
        if adaptation.judges_start
        else ", its start learnt without being judged"
    )
    guard = (
        f", its start guarded at adaptation.guard {adaptation.guard:.4g}"
        if adaptation.guard > 0
        else ", no start guard"
    )
    return (
        f"threshold {meta.threshold:.6g} on the scale of the dashboard's scores (each print "
        f"judged against its own first {adaptation.frames} frames at adaptation.threshold "
        f"{adaptation.threshold:.4g}{start}{guard})"
    )
