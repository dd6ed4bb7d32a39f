"""Each printer's last command answer, kept in the storage folder across restarts.

Home Assistant's Last command sensor (a retained MQTT message) and the page's Last command row
showed what became of an owner's command until the daemon stopped: the page forgot it at a
restart, and a broker unreachable at the stop kept "under way" for good, since the answer
that ended it could not be sent. Each answer is written here as it is given (answers are
rare: an owner's command, not a frame) and read at the next start; one still under way then
was cut off by a power cut or a kill, and is told so.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from watchdog.durable import read_json, replace_file, why_unreadable

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 * 2**20  # a few hundred bytes per printer
CUT_OFF = "the watchdog stopped before its end was known: it may have happened"

Answer = dict[str, object]  # one answer as its JSON object


class KeptAnswers:
    """One file of answers by printer name. Thread-safe: answers come from command threads
    and watchers; writes are ordered, each the whole file as it stands after its answer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the records
        self._writing = threading.Lock()  # one write at a time, never under ``_lock``
        self._answers: dict[str, Answer] = {}

    def load(self) -> dict[str, Answer]:
        """The answers kept by the last run, by printer (none when there is no file, or it
        cannot be read: said in the log, the daemon goes on without them). One still under
        way then is ended as cut off."""
        try:
            data = read_json(self.path, MAX_FILE_BYTES)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning(
                "last command answers in %s not read (%s): none shown",
                self.path,
                why_unreadable(exc),
            )
            return {}
        if not isinstance(data, dict):
            logger.warning("last command answers in %s not read: not a JSON object", self.path)
            return {}
        answers = {
            str(printer): _ended(answer) for printer, answer in data.items() if _valid(answer)
        }
        with self._lock:
            self._answers = answers | self._answers
            return dict(self._answers)

    def keep(self, printer: str, latest: Callable[[], Mapping[str, object] | None]) -> None:
        """``printer``'s last answer, as ``latest`` gives it when it is written (the caller's
        record, updated before: two answers given at once by two threads are written in
        either order, each time the newest); a disk that refuses it is said in the log."""
        with self._writing:
            answer = latest()
            if answer is None:
                return
            with self._lock:
                self._answers[printer] = dict(answer)
                data = json.dumps(self._answers, sort_keys=True).encode()
            try:
                replace_file(self.path, data)
            except OSError as exc:
                logger.warning(
                    "%s: its last command answer not kept in %s: %s", printer, self.path, exc
                )


def _valid(answer: object) -> bool:
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("text"), str)
        and isinstance(answer.get("ok"), bool)
        and isinstance(answer.get("under_way", False), bool)
    )


def _ended(answer: Mapping[str, object]) -> Answer:
    """An answer under way when the last run stopped without ending it: of unknown end."""
    if not answer.get("under_way"):
        return dict(answer)
    return dict(answer) | {
        "ok": False,
        "under_way": False,
        "unknown": True,
        "text": f"{answer['text']}; {CUT_OFF}",
    }
