"""Settings saved from the dashboard, kept next to the incidents and applied over the YAML.

The owner draws masks and the watched region, or moves sensitivity, consecutive and whether
the start is judged, on the
page; those edits land in ``<storage.dir>/overrides.json`` (not in the config file, which may
be read-only, templated or kept in git) and are validated by the same schema as the
YAML: a value the YAML would refuse is refused here too, with the same words. The daemon
(start and reload: ``load_starting_config``) and ``check-config`` read the config with them
on top, so they survive a restart, are listed with their origin by ``check-config``, and are removed with
"reset to the config file" on the page (or by deleting the file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from watchdog.config import (
    MASK_POINTS,
    MASK_POLYGONS,
    Config,
    ConfigError,
    DetectionConfig,
    load_config,
)
from watchdog.detection.bundle import Bundle, BundleError, BundleMeta, default_bundle_path
from watchdog.detection.detector import MaskError, checked_mask, effective_preprocess
from watchdog.durable import fsync_dir, read_json, replace_file, set_aside, why_unreadable
from watchdog.schema import SchemaError

logger = logging.getLogger(__name__)

FILE = "overrides.json"
# what the page saves for 60 printers, each with the most masks at full precision: a larger
# file was not written by the watchdog, and parsing it at every look of the page stalls it
MAX_FILE_BYTES = 8 * 2**20
# the detection keys the page edits
TUNABLE = ("mask", "region", "sensitivity", "consecutive", "judge_start")
_lock = threading.Lock()
# bumped by every save and reset of this process (under ``_lock``): the settings in force,
# read at some count, lag the file once it moves on (``save``'s ``shown``)
_saves = 0
Check = Callable[[str, DetectionConfig], None]  # ConfigError: a printer cannot watch so


@dataclass(frozen=True)
class Origin:
    """One setting that does not come from the config file."""

    key: str  # e.g. printers.ender3.detection.mask
    value: Any
    file: Path


def mask_refused(printer: str, exc: MaskError, saving: bool = False) -> ConfigError:
    """The one line for a refused mask, wherever it was set; ``saving``: one the page is
    saving, which nothing stores (Reset would throw away the printer's other saved settings)."""
    if saving:
        return ConfigError(
            f"printers.{printer}.detection.mask: {exc}; not saved: draw a smaller mask, or a "
            "larger watched region"
        )
    return ConfigError(
        f"printers.{printer}.detection.mask: {exc} (a mask saved on the dashboard is kept in "
        f"{FILE} in storage.dir: its 'Reset to the config file' button removes it, and "
        "so does deleting that file while the watchdog is stopped)"
    )


def config_mask_check(config: Config, saving: bool = False) -> Check:
    """``mask_check`` of the config's model (its model.json only): what a starting daemon and
    check-config hold the saved masks to (``saving``: as ``mask_check``'s)."""
    return mask_check(Bundle.load(config.model or default_bundle_path()).meta, saving)


def mask_check(meta: BundleMeta, saving: bool = False) -> Check:
    """The check a printer's mask must pass with this model (it must leave some of the watched
    region): ConfigError naming the key, in the words a watcher's refusal uses (``saving``:
    of settings the page is saving, refused unsaved)."""

    def check(printer: str, detection: DetectionConfig) -> None:
        try:
            checked_mask(detection.mask, effective_preprocess(meta, detection.region))
        except MaskError as exc:
            raise mask_refused(printer, exc, saving) from None

    return check


def saves_so_far() -> int:
    """How many saves and resets this process has made: taken before the file is read for the
    settings in force, it tells ``save`` whether they still follow the file."""
    with _lock:
        return _saves


def overrides_path(storage_dir: Path) -> Path:
    return Path(storage_dir) / FILE


def _read(storage_dir: Path) -> dict[str, Any]:
    """printer → its entry as the file holds it (``_detection`` checks one); ConfigError
    naming the file when the file itself is unusable. One printer's entry that is not what the
    page saves (written by another version, edited by hand) is that printer's problem only:
    it left every printer's settings out."""
    path = overrides_path(storage_dir)
    try:
        raw = read_json(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise ConfigError(
            f"{path}: the dashboard's saved settings cannot be read by this user: run this as "
            "the watchdog's user (sudo -u printer-watchdog ...)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: cannot read the dashboard's saved settings ({why_unreadable(exc)}); fix "
            "or delete the file"
        ) from exc
    printers = raw.get("printers") if isinstance(raw, dict) else None
    if not isinstance(printers, dict):
        raise ConfigError(
            f'{path}: expected {{"printers": {{name: {{detection: ...}}}}}}; fix or delete the file'
        )
    return {str(name): entry for name, entry in printers.items()}


def _detection(storage_dir: Path, name: str, entry: Any) -> dict[str, Any]:
    """A printer's saved detection settings from its ``entry``; ConfigError naming the file
    and the printer when they are not what the page saves."""
    path = overrides_path(storage_dir)
    detection = entry.get("detection") if isinstance(entry, dict) else None
    if not isinstance(detection, dict) or set(detection) - set(TUNABLE):
        raise ConfigError(
            f"{path}: printers.{name}: only detection.{'/'.join(TUNABLE)} may be saved here"
        )
    mask = detection.get("mask")
    if isinstance(mask, list) and (
        len(mask) > MASK_POLYGONS or any(isinstance(m, list) and len(m) > MASK_POINTS for m in mask)
    ):  # said before the schema weighs millions of corners, at every look of the page
        raise ConfigError(
            f"{path}: printers.{name}: detection.mask: more than the page saves "
            f"({MASK_POLYGONS} masks of {MASK_POINTS} corners at most); fix or delete the file"
        )
    return detection


def _merge(detection: DetectionConfig, changes: dict[str, Any], where: str) -> DetectionConfig:
    """The printer's detection settings with ``changes``, validated by the YAML's schema."""
    data = detection.model_dump()
    data.update(changes)
    try:
        return DetectionConfig.model_validate(data)
    except SchemaError as exc:
        raise ConfigError(exc.describe(f"{where}.")) from exc


def apply_overrides(config: Config, printer: str | None = None) -> Config:
    """``config`` with the saved dashboard settings on top (a printer no longer in the YAML is
    skipped with a warning); ConfigError naming the file when ``printer``'s (every printer's,
    when None) cannot be applied. Another printer's that cannot is left out and said: it
    stopped a command about this one."""
    folder = config.storage.dir
    if printer is None:
        return _applied(config, _read(folder), strict=True, folder=folder)[0]
    saved = _read(folder)
    mine = {k: v for k, v in saved.items() if k == printer}
    config = _applied(config, mine, strict=True, folder=folder)[0]
    others = {k: v for k, v in saved.items() if k != printer}
    config, refused = _applied(config, others, strict=False, folder=folder)
    for why in refused:
        logger.warning("%s", why)
    return config


def load_effective_config(path: str | Path, printer: str | None = None) -> Config:
    """The config file with the dashboard's saved settings on top (ConfigError naming the file
    that is wrong, for ``printer``'s when one is named)."""
    return apply_overrides(load_config(path), printer)


def load_starting_config(
    path: str | Path,
    check_for: Callable[[Config], Check] | None = None,
    storage_dir: Path | None = None,
) -> tuple[Config, list[str]]:
    """What a starting (or reloading) daemon watches with: the config file (ConfigError when
    it is wrong) and the saved settings on top where they apply, and why each of the others
    was left out. A saved file the daemon cannot apply (edited by hand, written by another
    version, a mask that hides the whole region of a model changed since: ``check_for`` the
    file's config gives that check) must not keep every printer unwatched until someone logs
    in, nor refuse every later reload (the config file edited, another printer's settings
    saved): those printers watch with the config file's settings, the file is kept as it is,
    and the page says so (``saved_and_refusal``). ``storage_dir``: where the settings are
    saved, when not the config's own (a running daemon keeps its folder until it restarts)."""
    config = load_config(path)
    folder = storage_dir if storage_dir is not None else config.storage.dir
    try:
        saved = _read(folder)
    except ConfigError as exc:
        return config, [f"{exc}; every printer watches with the config file's settings"]
    try:
        check = check_for(config) if check_for is not None and saved else None
    except BundleError as exc:  # the config's model: said as the start's own load says it
        if config.model is None:
            raise
        raise BundleError(f"{path}: model: {exc}") from None
    return _applied(config, saved, strict=False, folder=folder, check=check)


def saved_and_refusal(
    storage_dir: Path, printer: str, detection: DetectionConfig, check: Check | None = None
) -> tuple[dict[str, Any], str | None]:
    """``printer``'s saved settings and why they cannot be applied over ``detection`` (its
    settings in force) or pass ``check``, or None: what the page shows of them (one read of
    the file)."""
    try:
        entry = _read(storage_dir).get(printer)
        saved = {} if entry is None else dict(_detection(storage_dir, printer, entry))
        if saved:
            where = f"{overrides_path(storage_dir)}: printers.{printer}.detection"
            merged = _merge(detection, saved, where)
            if check is not None:
                try:
                    check(printer, merged)
                except ConfigError as exc:
                    return {}, f"{overrides_path(storage_dir)}: {exc}"
    except ConfigError as exc:
        return {}, str(exc)
    return saved, None


def _applied(
    config: Config,
    saved: dict[str, Any],
    strict: bool,
    folder: Path,
    check: Check | None = None,
) -> tuple[Config, list[str]]:
    """``config`` with ``saved`` (read from ``folder``) on top, and why each printer's saved
    settings left out were (``strict``: ConfigError instead)."""
    names = {p.name for p in config.printers}
    for name in sorted(set(saved) - names):
        logger.warning(
            "%s: printer %s is no longer in the config; its saved settings are ignored",
            overrides_path(folder),
            name,
        )
    printers, refused = [], []
    for p in config.printers:
        if p.name in saved:
            where = f"{overrides_path(folder)}: printers.{p.name}.detection"
            try:
                changes = _detection(folder, p.name, saved[p.name])
                merged = _merge(p.detection, changes, where)
                if check is not None:
                    try:
                        check(p.name, merged)
                    except ConfigError as exc:
                        raise ConfigError(f"{overrides_path(folder)}: {exc}") from None
                p = p.model_copy(update={"detection": merged})
            except ConfigError as exc:
                if strict:
                    raise
                refused.append(f"{exc}; printer {p.name} watches with the config file's settings")
        printers.append(p)
    return config.model_copy(update={"printers": printers}), refused


def origins(config: Config) -> list[Origin]:
    """Every setting that comes from the dashboard, for check-config and the page."""
    folder = config.storage.dir
    found = []
    for name, entry in sorted(_read(folder).items()):
        with contextlib.suppress(ConfigError):  # not applied: it sets nothing
            detection = _detection(folder, name, entry)
            found += [
                Origin(f"printers.{name}.detection.{key}", value, overrides_path(folder))
                for key, value in detection.items()
            ]
    return found


class ChangedElsewhere(Exception):
    """A setting the page drew on (``key``) was changed since by another save or a reset."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def save(
    storage_dir: Path,
    base: DetectionConfig,
    printer: str,
    changes: dict[str, Any],
    check: Callable[[DetectionConfig], None] = lambda merged: None,
    drawn_on: dict[str, Any] | None = None,
    shown: tuple[DetectionConfig, int] | None = None,
) -> dict[str, Any]:
    """Validate ``changes`` against ``base`` (the printer's YAML settings) and store them with
    what was saved before; returns the printer's saved settings. ConfigError when refused, by
    the schema or by ``check`` (what only the running daemon knows: the model's region).

    ``drawn_on``: each drawn setting as the page showed it (JSON), checked against what is
    saved in the same lock as the write: ChangedElsewhere when another save or a reset changed
    it since. Two tabs saving at once were both answered "saved", one of their drawings lost;
    a check against the settings in force let both through. A setting the file does not hold,
    or holds but cannot apply (edited by hand, a model changed since: the printer watches
    without it), is compared with ``shown``, the settings in force the page showed and the
    ``saves_so_far`` they were read at (default ``base``): else the page, redrawn from them,
    was told "changed elsewhere" at every save. Only while no save or reset came since: the
    settings in force lag those by a reload, and a drawing made before a reset would have
    undone it unsaid."""
    unknown = set(changes) - set(TUNABLE)
    if unknown:
        raise ConfigError(
            f"printers.{printer}.detection: {', '.join(sorted(unknown))} cannot be set from the dashboard"
        )
    with _lock:
        saved = _read(storage_dir)
        before = _detection(storage_dir, printer, saved[printer]) if printer in saved else {}
        held = before if drawn_on and _applies(base, before, check) else {}
        current = shown is not None and shown[1] == _saves
        in_force = (shown[0] if shown is not None and current else base).model_dump()
        for key, seen in (drawn_on or {}).items():
            now = held[key] if key in held else in_force.get(key)
            if json.loads(json.dumps(now)) != seen:
                raise ChangedElsewhere(key)
        mine = {**before, **changes}
        merged = _merge(base, mine, f"printers.{printer}.detection")
        check(merged)
        # Store what the schema made of it (tuples as lists, numbers as numbers).
        dumped = merged.model_dump()
        mine = {k: dumped[k] for k in mine}
        saved[printer] = {"detection": mine}
        _write(storage_dir, saved)
        _bump()
    return mine


def _applies(
    base: DetectionConfig, saved: dict[str, Any], check: Callable[[DetectionConfig], None]
) -> bool:
    """Whether the saved settings ``saved`` apply over ``base`` (a reload would use them)."""
    try:
        check(_merge(base, saved, "saved"))
    except ConfigError:
        return False
    return True


def reset(storage_dir: Path, printer: str, keys: tuple[str, ...] = TUNABLE) -> str:
    """Forget the saved settings ``keys`` of ``printer``: the config file's values apply again.

    A saved-settings file that cannot be read is set aside (renamed, nothing lost), so the
    button that says "back to the config file" works when it is needed most; returns what
    was done, in the owner's words."""
    with _lock:
        try:
            saved = _read(storage_dir)
        except ConfigError as exc:
            path = overrides_path(storage_dir)
            aside = set_aside(path)
            _bump()
            logger.warning("%s; set aside as %s, every printer is on its config file", exc, aside)
            return f"the saved settings could not be read; set aside as {aside}"
        try:
            before = _detection(storage_dir, printer, saved.get(printer, {"detection": {}}))
        except ConfigError as exc:  # kept as it was, set aside; the other printers' stay
            saved.pop(printer)
            path = overrides_path(storage_dir)
            aside = set_aside(path)
            try:
                _write(storage_dir, saved)
            except OSError:  # a full disk: the file back as it was, the others' settings in it
                os.replace(aside, path)
                raise
            _bump()
            logger.warning("%s; the file set aside as %s, the other printers' kept", exc, aside)
            return f"its saved settings could not be read; the file set aside as {aside}"
        mine = {k: v for k, v in before.items() if k not in keys}
        if mine:
            saved[printer] = {"detection": mine}
        else:
            saved.pop(printer, None)
        _write(storage_dir, saved)
        _bump()
    return "back to the config file's settings"


def _bump() -> None:
    """One save or reset more (``_lock`` held)."""
    global _saves
    _saves += 1


def _write(storage_dir: Path, saved: dict[str, Any]) -> None:
    """printer → entry (another printer's kept as the file held it, unusable or not)."""
    path = overrides_path(storage_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not saved:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)  # a power cut must not bring back what was reset
            return
        body = {"printers": dict(sorted(saved.items()))}
        replace_file(path, json.dumps(body, indent=2).encode(), mode=0o644)
    except OSError as exc:  # named as the owner knows it, not its hidden temporary file
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def yaml_snippet(printer: str, detection: dict[str, Any]) -> str:
    """The same settings as YAML, for owners who keep their config in git."""
    if not detection:
        return ""
    doc = {"printers": [{"name": printer, "detection": detection}]}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
