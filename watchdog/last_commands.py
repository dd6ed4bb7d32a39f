"""Each printer's last command and what became of it, for the page.

The page's toast says a command's first answer only: a Cancel "under way" (the printer has not
shown it yet) that ends "did NOT cancel" a minute later was told to Home Assistant's Last
command sensor and to a phone, never to the page, whose owner took the toast for done. Every
command goes through ``Daemon.dispatch`` whatever sent it; its answer, and its end when it was
under way, are kept here, as Home Assistant's sensor keeps them (an end told after a later
command's answer replaces it too: it is the newest news of the printer), and in the storage
folder for the next start (``keep_in``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from watchdog.control import Command, CommandResult, Verb, answer_text, on_news
from watchdog.kept_answers import Answer, KeptAnswers

# who pressed it, in the owner's words (MQTT's: ``LastCommands.mqtt_sender``)
SOURCES = {
    "web": "the page",
    "phone": "a phone",
    "cli": "the command line",
}


@dataclass(frozen=True)
class LastCommand:
    """One command's answer, as the page shows it (``text``: "Cancel print: ...")."""

    command: str
    source: str
    ok: bool
    under_way: bool
    unknown: bool
    text: str
    time: float  # the epoch, when this answer was given
    # the end of one of the page's or a phone's commands answered "under way" (the page's
    # toast said only that); MQTT's ends come as answers of their own (``keep``)
    told_again: bool


class LastCommands:
    """Thread-safe: the command threads, the web server's and a watcher's (an end) record, the
    page's status reads."""

    def __init__(self, mqtt_sender: str = "Home Assistant") -> None:
        # commands over MQTT come from Home Assistant where its discovery made the buttons;
        # without discovery, from whatever the owner scripted: "MQTT", not a name it is not
        self._mqtt_sender = mqtt_sender
        self._lock = threading.Lock()
        self._last: dict[str, LastCommand] = {}
        self._kept: KeptAnswers | None = None

    def keep_in(self, path: Path) -> None:
        """Keep each printer's last command in ``path`` from now on, and show the ones the
        last run kept (once the storage folder is the daemon's: its lock held)."""
        kept = KeptAnswers(path)
        loaded = {p: c for p, a in kept.load().items() if (c := _from_json(a)) is not None}
        with self._lock:
            self._last = loaded | self._last
            self._kept = kept

    def record(self, command: Command, result: CommandResult, again: bool = False) -> None:
        """``result``, the answer given to ``command`` (``again``: its end, after "under way");
        one under way is recorded again when it ends. The page's frame refresh (LOOK) is no
        command of the owner's."""
        if command.verb is Verb.LOOK:
            return
        self.keep(command, result, again)
        on_news(result, lambda final: self.record(command, final, again=True))

    def keep(self, command: Command, result: CommandResult, again: bool = False) -> None:
        """``result`` as the printer's last command, as it is: MQTT's answers (``Notifier``'s
        ``answered``), ends included, are each told here by the MQTT side, which also answers
        commands that never reach the daemon (too late, a flood)."""
        last = LastCommand(
            command=command.verb.value,
            source=self._mqtt_sender
            if command.source == "mqtt"
            else SOURCES.get(command.source, command.source),
            ok=result.ok,
            under_way=result.under_way,
            unknown=result.unknown,
            text=answer_text(command, result),
            time=time.time(),
            told_again=again,
        )
        with self._lock:
            self._last[command.printer] = last
            kept = self._kept
        if kept is not None:
            kept.keep(command.printer, lambda: self.of(command.printer))

    def of(self, printer: str) -> dict[str, object] | None:
        """The printer's last command as JSON for the page, None before any."""
        with self._lock:
            last = self._last.get(printer)
        return None if last is None else asdict(last)


def _from_json(answer: Answer) -> LastCommand | None:
    """A kept command as the page shows it (None: not one this version wrote)."""
    kinds: dict[str, type | tuple[type, ...]] = {"time": (int, float)}
    kinds |= dict.fromkeys(("command", "source", "text"), str)
    kinds |= dict.fromkeys(("ok", "under_way", "unknown", "told_again"), bool)
    if set(answer) != {f.name for f in fields(LastCommand)}:
        return None
    if not all(isinstance(answer[k], kind) for k, kind in kinds.items()):
        return None
    return LastCommand(**answer)  # type: ignore[arg-type]
