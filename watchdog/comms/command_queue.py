"""The owner's commands from MQTT, carried out in order for each printer, printers side by side.

A command waits for its printer's watcher to answer, up to the printer API's timeouts and
retries (about a minute by default): one printer whose API does not answer must not hold the
commands of the others, so each printer with commands waiting has a thread of its own, which
ends when they are done. A command that waited too long behind its printer's earlier ones is
not carried out: a cancel minutes late would stop whatever prints by then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from watchdog.control import Command, CommandResult, Verb, on_news
from watchdog.incidents import ThrottledLog

logger = logging.getLogger(__name__)

# commands waiting for one printer; more at once are refused (a flood). Each printer its own:
# sixteen piled up behind one whose API hangs refused every other printer's for minutes
COMMANDS_WAITING = 16
COMMAND_FRESH_S = 30.0  # a command that waited longer is not carried out
# a printer's commands of one kind taken in a minute, at most: a flood published as fast as a
# client can (a looping automation, anyone allowed to publish) was carried out at hundreds a
# second, each logged and its answer written to the storage folder; another kind still passes
COMMANDS_PER_MINUTE = 60
SWITCH = (Verb.ENABLE, Verb.DISABLE)  # a state, not an act: only the newest one counts


Answered = Callable[[Command, CommandResult], None]


class Put(Enum):
    """What ``PrinterCommands.put`` did with a command, and why not when it did not: the
    sender is told the reason the queue saw, not one guessed afterwards. True when taken."""

    TAKEN = "taken"
    FULL = f"ignored: {COMMANDS_WAITING} earlier commands are still waiting"
    TOO_MANY = f"ignored: more than {COMMANDS_PER_MINUTE} of them this minute"
    NOT_NOW = "not carried out: the watchdog is stopping or short of threads; send it again"
    # the demo: its Home Assistant device has the buttons, and nothing to carry them out
    NOBODY = "not carried out: this watchdog carries out no command (the demo)"

    def __bool__(self) -> bool:
        return self is Put.TAKEN


class PrinterCommands:
    """Commands queued per printer, each printer's carried out by a thread of its own.

    ``answered`` is told what became of each command taken (done, refused, not carried out;
    a command still under way when its wait ran out, again once it ends): the sender (Home
    Assistant) has no other way to learn it."""

    def __init__(
        self, dispatch: Callable[[Command], CommandResult], answered: Answered | None = None
    ) -> None:
        self._dispatch = dispatch
        self._answered = answered
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[Command, float]]] = {}
        self._workers: dict[str, threading.Thread] = {}
        # when each printer's commands of each kind were taken in the last minute
        self._taken: dict[tuple[str, Verb], deque[float]] = {}
        self._closed = False
        self._drops = ThrottledLog(60.0)

    def put(self, command: Command) -> Put:
        """Queue ``command`` (``Put.TAKEN``), or why not: COMMANDS_WAITING are waiting already
        for its printer, COMMANDS_PER_MINUTE of its kind were taken this minute, closed, or no
        thread to carry it out. A Watching switch replaces one still waiting: a flood of ON and OFF ends
        as its last word says (the newest were refused, the printer left off)."""
        with self._lock:
            queue = self._queues.get(command.printer)
            if queue is not None and command.verb in SWITCH:
                for waiting in [w for w in queue if w[0].verb in SWITCH]:
                    queue.remove(waiting)
                    # it may have been logged as taken: the log must not leave it looking
                    # carried out (a flood: one line a minute, the rest counted)
                    self._drops(
                        logger,
                        logging.INFO,
                        command.printer,
                        "%s: MQTT command %s dropped before it was carried out: %s came after it",
                        command.printer,
                        waiting[0].verb.value,
                        command.verb.value,
                    )
            if self._closed:
                return Put.NOT_NOW
            if queue is not None and len(queue) >= COMMANDS_WAITING:
                return Put.FULL
            now = time.monotonic()
            taken = self._taken.setdefault((command.printer, command.verb), deque())
            while taken and now - taken[0] >= 60.0:
                taken.popleft()
            # switches replace each other in the queue: never a pile, never refused for it
            if command.verb not in SWITCH and len(taken) >= COMMANDS_PER_MINUTE:
                return Put.TOO_MANY
            self._queues.setdefault(command.printer, deque()).append((command, now))
            if command.printer not in self._workers:
                worker = threading.Thread(
                    target=self._carry_out,
                    args=(command.printer,),
                    name=f"mqtt-commands-{command.printer}",
                    daemon=True,
                )
                try:
                    worker.start()
                except RuntimeError:  # no thread to be had (the unit's TasksMax): not queued
                    self._queues[command.printer].pop()
                    if not self._queues[command.printer]:
                        del self._queues[command.printer]
                    return Put.NOT_NOW
                self._workers[command.printer] = worker
            if command.verb not in SWITCH:  # counted once queued (not when no thread took it)
                taken.append(now)
        return Put.TAKEN

    def full(self, printer: str) -> bool:
        """COMMANDS_WAITING of ``printer``'s commands are waiting."""
        with self._lock:
            return len(self._queues.get(printer, ())) >= COMMANDS_WAITING

    def close(self, timeout: float) -> int:
        """Take no more; drop those waiting (returned: how many), wait for those under way,
        then answer each printer's last dropped one: they were logged as taken, and the
        sender's Last command must not stay on an earlier one (answered after, it is the last;
        one answer a printer, as only the last is kept)."""
        with self._lock:
            self._closed = True
            last = {printer: queue[-1][0] for printer, queue in self._queues.items() if queue}
            dropped = sum(len(queue) for queue in self._queues.values())
            self._queues.clear()
            workers = list(self._workers.values())
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for command in last.values():
            self._answer(command, CommandResult(False, "not carried out: the watchdog stopped"))
        return dropped

    def _next(self, printer: str) -> tuple[Command, float] | None:
        with self._lock:
            queue = self._queues.get(printer)
            if not queue:  # done (or closed): the thread ends, the next command starts another
                self._queues.pop(printer, None)
                self._workers.pop(printer, None)
                return None
            return queue.popleft()

    def _carry_out(self, printer: str) -> None:
        while (queued := self._next(printer)) is not None:
            command, came = queued
            waited = time.monotonic() - came
            if waited > COMMAND_FRESH_S:
                logger.warning(
                    "%s: MQTT command %s not carried out: it waited %.0f s behind the printer's "
                    "earlier commands (its API did not answer); send it again if still wanted",
                    printer,
                    command.verb.value,
                    waited,
                )
                self._answer(
                    command,
                    CommandResult(
                        False,
                        f"not carried out: it waited {waited:.0f} s behind earlier commands "
                        "(the printer did not answer); send it again if still wanted",
                    ),
                )
                continue
            try:
                result = self._dispatch(command)
            except Exception:  # noqa: BLE001 - one failing command must not end the others
                logger.exception("%s: handling MQTT command %s failed", printer, command.verb.value)
                self._answer(command, CommandResult(False, "failed: see the watchdog's log"))
                continue
            (logger.info if result.ok else logger.warning)("%s: %s", printer, result.detail)
            self._answer(command, result)

    def _answer(self, command: Command, result: CommandResult) -> None:
        """Tell the sender; a command under way is told again when it ends, and an end put
        right later (a pause paused after all) when it is. A failure to tell must not end the
        printer's thread: its later commands would never be carried out."""
        if self._answered is None:
            return
        try:
            self._answered(command, result)
        except Exception:  # noqa: BLE001 - the answer is lost, the commands go on
            logger.exception(
                "%s: cannot tell what became of %s", command.printer, command.verb.value
            )
            return
        on_news(result, lambda final: self._told_again(command, final))

    def _told_again(self, command: Command, final: CommandResult) -> None:
        (logger.info if final.ok else logger.warning)(
            "%s: %s (after an earlier answer)", command.printer, final.detail
        )
        self._answer(command, final)
