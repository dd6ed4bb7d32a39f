"""MQTT command messages → ``watchdog.control.Command``; everything else is refused.

Command topics (``<prefix>`` is ``mqtt.topic_prefix``):

- ``<prefix>/<printer>/enabled/set``: ``ON`` | ``OFF`` (the Home Assistant switch);
- ``<prefix>/<printer>/feedback``: ``{"incident": id | "latest", "verdict": "not_failure" | "failure"}``;
- ``<prefix>/<printer>/command``: ``pause`` | ``resume`` | ``cancel`` (through the printer's API)
  | ``skip_print`` (stop watching the print under way; the next one is watched), or
  ``{"command": ..., "incident": id}``: acts only on that alert's print (``"latest"``: on the
  print running now, as the bare word).

Pure functions, so they are fuzzed directly. Only these shapes pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from watchdog.control import LATEST_INCIDENT, Command, Verb
from watchdog.incidents import SAFE_NAME

MAX_COMMAND_BYTES = 1024
COMMAND_TOPICS = ("+/enabled/set", "+/feedback", "+/command")  # under <prefix>/
VERDICT_VERBS = {"not_failure": Verb.NOT_A_FAILURE, "failure": Verb.CONFIRM_FAILURE}
ACTION_VERBS = {
    "pause": Verb.PAUSE,
    "resume": Verb.RESUME,
    "cancel": Verb.CANCEL,
    "skip_print": Verb.SKIP_PRINT,
}


class CommandError(ValueError):
    """A command message that is refused; ``kind`` groups reasons for rate-limited logging."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def command_kind(prefix: str, topic: str) -> str | None:
    """``enabled`` | ``feedback`` | ``command`` when ``topic`` is a command topic, else None."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 3 and parts[1:] == ["enabled", "set"]:
        return "enabled"
    if len(parts) == 2 and parts[1] in ("feedback", "command"):
        return parts[1]
    return None


def parse_command(prefix: str, printers: Iterable[str], topic: str, payload: bytes) -> Command:
    """Validate one command message into a ``Command`` (source ``mqtt``), or CommandError."""
    kind = command_kind(prefix, topic)
    if kind is None:
        raise CommandError(
            "topic", f"topic {topic[:200]!r} is not a command topic under {prefix!r}"
        )
    printer = topic[len(prefix) + 1 :].split("/")[0]
    if printer not in set(printers):
        raise CommandError("printer", f"unknown printer {printer[:64]!r}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(
            kind, f"payload of {len(payload)} bytes is over the {MAX_COMMAND_BYTES}-byte limit"
        )
    if kind == "enabled":
        value = payload.strip()
        if value not in (b"ON", b"OFF"):
            raise CommandError(kind, "payload must be ON or OFF")
        return Command(printer, Verb.ENABLE if value == b"ON" else Verb.DISABLE, source="mqtt")
    if kind == "command" and not payload.lstrip().startswith(b"{"):
        verb = ACTION_VERBS.get(payload.strip().decode("ascii", "replace"))
        if verb is None:
            raise CommandError(kind, f"payload must be one of {', '.join(ACTION_VERBS)}")
        return Command(printer, verb, source="mqtt")
    # a command naming its alert ({"command", "incident"}: it acts only while that alert is
    # the printer's latest and its print runs, as a phone's button), or a verdict
    keys = ("command", "incident") if kind == "command" else ("incident", "verdict")
    data = _json_object(kind, payload, keys)
    incident, word = data["incident"], data[keys[0] if kind == "command" else keys[1]]
    if not isinstance(incident, str) or not SAFE_NAME.fullmatch(incident):
        raise CommandError(kind, "incident must be an incident id (letters, digits, '_' or '-')")
    if kind == "command" and incident == LATEST_INCIDENT:
        # feedback's word: a command bound to no alert, as the bare word is (it was taken for
        # an alert's id, and refused as "a newer alert since this one")
        incident = None
    verbs = ACTION_VERBS if kind == "command" else VERDICT_VERBS
    if not isinstance(word, str) or word not in verbs:
        name = "command" if kind == "command" else "verdict"
        raise CommandError(kind, f"{name} must be one of {', '.join(verbs)}")
    return Command(printer, verbs[word], incident=incident, source="mqtt")


def _json_object(kind: str, payload: bytes, keys: tuple[str, str]) -> dict[str, object]:
    """The payload as a JSON object with exactly ``keys``, or CommandError."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommandError(kind, f"payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise CommandError(kind, "payload must be a JSON object")
    if set(data) != set(keys):
        raise CommandError(kind, f'payload must have exactly the keys "{keys[0]}" and "{keys[1]}"')
    return data
