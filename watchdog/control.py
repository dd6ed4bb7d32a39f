"""What the owner can ask of a watcher, whatever the channel: MQTT, the web page, a phone.

Every channel parses its own input into a ``Command`` and hands it to one ``Dispatcher`` (the
daemon), which routes it: the owner's verdict on an incident goes to the incident store, the
rest to the printer's watcher through its command queue, drained by the watcher's own thread.
So a button on the page and a button on the phone do exactly what the MQTT command does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from watchdog.printing import Action, Outcome

LATEST_INCIDENT = "latest"  # the printer's most recent alert (the Home Assistant button)


class Verb(Enum):
    ENABLE = "enable"  # start watching again
    DISABLE = "disable"  # stop watching (no frame is scored, nothing is paused)
    # stop watching the print under way only: watched again from the next print (ENABLE: now)
    SKIP_PRINT = "skip_print"
    NOT_A_FAILURE = "not_failure"  # keep the incident's frame for retraining, re-learn the print
    CONFIRM_FAILURE = "failure"  # keep the incident's frames as labelled failures
    PAUSE = "pause"  # through the printer API
    RESUME = "resume"
    CANCEL = "cancel"
    LOOK = "look"  # one camera frame for the page, while nothing is watched (an idle printer)


INCIDENT_VERBS = frozenset({Verb.NOT_A_FAILURE, Verb.CONFIRM_FAILURE})

# each command as the button that sends it is named (Home Assistant's entities; its answer,
# there and on the page, says so)
COMMAND_NAMES = {
    Verb.ENABLE: "Watching on",
    Verb.DISABLE: "Watching off",
    Verb.SKIP_PRINT: "Stop watching this print",
    Verb.NOT_A_FAILURE: "Not a failure",
    Verb.CONFIRM_FAILURE: "Confirm failure",
    Verb.PAUSE: "Pause print",
    Verb.RESUME: "Resume print",
    Verb.CANCEL: "Cancel print",
}


def printer_answers(action: Action, outcome: Outcome, api: bool) -> tuple[Verb, ...]:
    """The printer buttons an alert offers its owner (phone, page): Resume only where our
    pause happened, Cancel while a printer API could still stop the print; none without an
    API (they could only answer "skipped")."""
    if not api:
        return ()
    resume = (Verb.RESUME,) if (action, outcome) == (Action.PAUSE, Outcome.DONE) else ()
    cancel = () if (action, outcome) == (Action.CANCEL, Outcome.DONE) else (Verb.CANCEL,)
    return resume + cancel


def saved_answers(alert: Mapping[str, object]) -> tuple[Verb, ...]:
    """The printer buttons of a saved alert (its JSON); one saved before they were recorded
    offers both, as it did then."""
    saved = alert.get("answers")
    if not isinstance(saved, list):
        return (Verb.RESUME, Verb.CANCEL)
    return tuple(v for v in (Verb.RESUME, Verb.CANCEL) if v.value in saved)


@dataclass(frozen=True)
class Command:
    """One request of the owner's. ``incident`` names the alert a verdict is about."""

    printer: str
    verb: Verb
    incident: str | None = None
    # where it came from (mqtt | web | phone | cli): for the log line, and for what its answer
    # must say (Home Assistant shows it away from the alert: which alert a verdict marked)
    source: str = "mqtt"


@dataclass(frozen=True)
class CommandResult:
    """What became of a command, in the owner's words (shown on the page and logged)."""

    ok: bool
    detail: str
    # started, not ended: told again through ``later`` (not answered in time; a pause or
    # cancel the printer has not shown yet, which may still end "did NOT pause")
    under_way: bool = False
    unknown: bool = False  # sent to the printer and not answered: it may have happened
    incident: str | None = None  # the alert a verdict marked (its command may say "latest")
    # under way: what it comes to, once done (its sender may still act on it: a phone's button
    # that failed in the end works again)
    later: Future[CommandResult] | None = field(default=None, compare=False, repr=False)
    # an end that may still be put right: a Pause told "did NOT pause" that the printer shows
    # paused later (behind a heat-up) sets it; never set where it is not
    correction: Future[CommandResult] | None = field(default=None, compare=False, repr=False)


def outcome_of(done: Future[CommandResult]) -> CommandResult:
    """What a command's future, done, comes to in the owner's words: taken back before it ran,
    or failed in its watcher (which logged it), is said so."""
    if done.cancelled():
        return CommandResult(False, "it was not carried out")
    if done.exception() is not None:
        return CommandResult(False, "failed: see the watchdog's log")
    return done.result()


def on_news(result: CommandResult, told: Callable[[CommandResult], None]) -> None:
    """``told`` each later word on ``result`` once it comes: its end when it was under way,
    and its correction when it is put right (a pause paused after all), in the owner's words
    (``outcome_of``). Every sender told again (Home Assistant, the page) follows the same."""
    later = result.later if result.under_way else None
    for news in (later, result.correction):
        if news is not None:
            news.add_done_callback(lambda done: told(outcome_of(done)))


def settled(done: Future[CommandResult]) -> Future[CommandResult]:
    """What a command comes to in the end, past any "under way" it is answered first: a
    command late to its watcher whose watcher then answers "under way" (a pause the printer
    has not shown yet) ends when that does, not with that answer."""
    end: Future[CommandResult] = Future()
    end.set_running_or_notify_cancel()

    def follow(step: Future[CommandResult]) -> None:
        if step.cancelled():
            end.set_result(CommandResult(False, "it was not carried out"))
        elif (exc := step.exception()) is not None:
            end.set_exception(exc)
        elif (result := step.result()).under_way and result.later is not None:
            result.later.add_done_callback(follow)
        else:
            end.set_result(result)

    done.add_done_callback(follow)
    return end


@dataclass(frozen=True)
class Applied:
    """What became of a settings change saved on the page: in force (``done`` True), refused
    by the reload (False, ``why``), or still to come (None, ``why``); ``left_out``: the reload
    was done, but without the printer's saved settings (``why``): it watches with the config
    file's."""

    done: bool | None
    why: str = ""
    left_out: bool = False


def answer_text(command: Command, result: CommandResult) -> str:
    """An answer in the owner's words, named as the button that sent it ("Pause print: ...")."""
    return f"{COMMAND_NAMES.get(command.verb, command.verb.value)}: {result.detail}"


# told what became of a command (its sender's path gave it: MQTT's refusals of its own)
Answered = Callable[[Command, CommandResult], None]


class Dispatcher(Protocol):
    def dispatch(self, command: Command) -> CommandResult: ...
