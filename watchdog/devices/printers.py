"""Printer clients: ask whether the printer prints, and pause or cancel it.

One small interface (``status``, ``pause``, ``cancel``) with one class per ``api.kind``:
OctoPrint, Moonraker, none, plus an in-process simulated printer for the demo. The daemon
acts on a printer that can start a fire, so every call here has a timeout, retries are
bounded and watch the stop event, nothing raises into the loop, and every failure is one log
line naming the URL and what went wrong (never the API key).

States reported by ``status()``:

- ``printing``: a job runs (the camera is watched);
- ``paused``: a job is paused (OctoPrint "Pausing" counts as paused);
- ``idle``: the API answered and nothing prints (also OctoPrint with no printer connected);
- ``error``: the printer itself reports an error (OctoPrint error flag, Klippy shutdown);
- ``offline``: the API could not tell (unreachable, timeout, key rejected, 5xx, bad answer).

``pause``/``cancel`` check the state first, then send the command; "done" means the API
accepted it. Timeouts, connection errors, 5xx and unreadable answers are retried
``api.retries`` times with backoff 1, 2, 4… s (at most 10 s); a rejected key (401/403), a
refusal (409) or another 4xx is not. Worst case with the defaults (10 s timeout, 3 retries):
about a minute before "failed" is reported.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import urllib3

from watchdog.config import ApiConfig
from watchdog.devices.http_client import HttpClient, certificate_refused, connection_cause
from watchdog.printing import (
    AFTER,
    ALLOWED,
    ALREADY,
    API_TEXT_CHARS,
    Action,
    ActionResult,
    Outcome,
    PrinterState,
    PrinterStatus,
    api_text,
    heating,
    job_name,
    number,
    seconds,
)
from watchdog.redact import address_of, redact, redact_url, secret_filter

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1_000_000  # an API answer is a few kB; anything bigger is refused
STATUS_TIMEOUT_S = 5.0  # status() runs every frame: keep it short whatever api.timeout_s says
# the wait before a retry, doubled each time up to the most
BACKOFF_S, MAX_BACKOFF_S = 1.0, 10.0


def refusal(action: Action, st: PrinterStatus) -> str:
    """Why ``action`` is refused in the printer's state, in the owner's words."""
    why = f": {st.detail}" if st.detail else ""
    doing = "not paused" if action is Action.RESUME else "not printing"
    return f"{doing} (printer is {st.state}{why})"


class PrinterClient(Protocol):
    """What the watcher loop needs from a printer; no method raises."""

    def status(self) -> PrinterStatus: ...

    def pause(self) -> ActionResult: ...

    def cancel(self) -> ActionResult: ...

    def resume(self) -> ActionResult: ...

    def close(self) -> None:
        """Let go of its connections: its watcher has stopped (a reload's old watchers, a
        shutdown). A connection kept alive for the next request was otherwise held until
        the old client was collected, half-closed once the server had closed its end."""


# --------------------------------------------------------------------------- failures


KEY_REJECTED = "API key rejected"  # in a status's detail: the owner must fix the key


class _Failure(Exception):
    """A request that failed; ``detail`` is ready for a log line and an alert."""

    def __init__(
        self, detail: str, retryable: bool, unsent: bool = False, answered: bool = False
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.unsent = unsent  # failed before the request left (no connection, no TLS)
        self.answered = answered  # the server answered it with an error: it was not done
        self.after_send = False  # a command that may have reached the printer: it may be done


class _Conflict(_Failure):
    """HTTP 409: the server refuses the command in the printer's current state."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retryable=False, answered=True)


# OctoPrint's state text while it copies a file onto the printer's SD card ("Starting to send
# file to SD", "Sending file to SD"): its flags say printing
_SENDING_TO_SD = re.compile(r"send(?:ing)? file to SD", re.IGNORECASE)
_MESSAGE_BYTES = 16_384  # of an answer's body read for its error message
_CUT_MARGIN = 1_024  # dropped where the body is cut: longer than a secret or a URL with one


def _server_message(body: bytes, secrets: tuple[str, ...] = ()) -> str:
    """The error message in an answer body: OctoPrint, Moonraker, or the start of the text;
    secrets are masked before it is cut, so no part of one survives the cut. Only the body's
    start is read (a message is its first 200 characters): a large answer, a hostile one
    included, costs each poll a few milliseconds, not seconds of every thread's time. Where it
    is cut, its last ``_CUT_MARGIN`` characters go too: a secret or URL cut in two there would
    escape the masking."""
    text = redact(body[:_MESSAGE_BYTES].decode("utf-8", "replace"), secrets)
    if len(body) > _MESSAGE_BYTES:
        text = text[:-_CUT_MARGIN]  # masked as far as it could be: a secret cut there is not
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: hostile "[[[[…" nesting
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("message"))
        if isinstance(err, dict):
            err = err.get("message")
        if isinstance(err, str) and err.strip():
            # masked again: JSON's escapes (\\u0041, \\/) hid a secret from the first pass
            return redact(" ".join(err.split()), secrets)[:200]  # one line in log and alert
    text = re.sub(r"<[^<>]*>", " ", text)  # HTML error pages (linear: a run of "<" too)
    return " ".join(text.split())[:200]


# --------------------------------------------------------------------------- HTTP clients


class _HttpPrinter:
    """Shared plumbing of the HTTP clients: connections, TLS, HTTP requests, retries, logging."""

    name = "printer API"

    def __init__(
        self,
        api: ApiConfig,
        stop: threading.Event | None = None,
        *,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.api = api
        self.base_url = api.url.rstrip("/")
        # no user name either: it is said in alerts, on the phone
        self._shown_base = address_of(self.base_url)
        self._key = api.api_key.get_secret_value() if api.api_key else ""
        self._stop = stop or threading.Event()
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()  # one request at a time, in order
        self._polling = threading.local()  # ``cut``: this thread's requests are a status poll
        self._last_status_problem: str | None = None
        headers = {"X-Api-Key": self._key} if self._key else {}  # with HttpClient's User-Agent
        verify: bool | str = True
        if api.insecure:
            verify = False
            # Said once here instead of urllib3's warning on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            logger.warning(
                "%s %s: TLS certificate verification is off (insecure: true)",
                self.name,
                self._shown_base,
            )
        elif api.ca_file:
            verify = str(api.ca_file)
        self._http = HttpClient(headers, verify=verify)  # redirects are answers (see _request)

    # ---- one request

    def _secrets(self) -> tuple[str, ...]:
        """Its key and every secret the config holds: a server echoing the request back
        (its URL's password, decoded, or the Basic auth header it became) reaches /status and
        the page without the log's filter."""
        return (self._key, *secret_filter.known())

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets())

    def _their_words(self, text: str) -> str:
        """A state or error text the API gave, fit for the log, the page, MQTT and the
        phone: on one line, cut (``api_text``), without the secrets it may echo (masked
        before the cut, which could leave half of one unrecognised)."""
        return api_text(self._scrub(api_text(text, 4 * API_TEXT_CHARS)))

    def _connection_problem(self, exc: BaseException) -> str:
        """A short phrase for urllib3's nested connection errors."""
        cause = connection_cause(exc, "server")
        return cause or f"connection failed ({self._scrub(str(exc))[:160]})"

    def _exchange(
        self, method: str, url: str, payload: bytes | None, timeout: float, shown: str
    ) -> tuple[urllib3.BaseHTTPResponse, bytes]:
        """The answer and its body (at most MAX_ANSWER_BYTES + 1), all within ``timeout``: an
        API (or a proxy) sending its answer a byte at a time held the watcher, and every pause
        queued behind it, far past the timeout of each wait."""
        # a status poll is cut short at a stop (Ctrl-C, a shutdown); a command never is, nor the
        # status read before it: one cut mid-way might have reached the printer or not
        cut_by = self._stop if getattr(self._polling, "cut", False) else None
        with self._lock, self._http.deadline(timeout, cut_by) as deadline:
            try:
                resp = self._http.open(
                    method,
                    url,
                    timeout=timeout,
                    body=payload,
                    headers={"Content-Type": "application/json"} if payload is not None else None,
                ).response
                try:
                    return resp, resp.read(MAX_ANSWER_BYTES + 1, decode_content=True)
                finally:
                    resp.close()
            except ValueError:  # UnicodeError, or a header value http.client refuses
                raise _Failure(
                    f"{shown}: api.api_key or api.url holds characters an HTTP request cannot "
                    "carry",
                    retryable=False,
                ) from None
            except Exception:
                if deadline.expired:
                    raise _Failure(
                        f"{shown}: no whole answer within {timeout:g} s (timeout)",
                        retryable=True,
                        unsent=not deadline.connected,
                    ) from None
                raise

    def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, timeout: float
    ) -> Any:
        """One HTTP request; the decoded JSON answer (None when empty), or _Failure."""
        url = self.base_url + path
        shown = f"{method} {self._shown_base}{path}"
        payload = None if body is None else json.dumps(body).encode()
        try:
            resp, raw = self._exchange(method, url, payload, timeout, shown)
        except urllib3.exceptions.SSLError as exc:
            if not certificate_refused(exc):  # cut short: the next try may pass
                # (urllib3 says SSLError also for an answer cut short: the request may be sent)
                raise _Failure(
                    f"{shown}: {self._connection_problem(exc)}", retryable=True
                ) from None
            raise _Failure(
                f"{shown}: TLS certificate not accepted ({self._scrub(str(exc))[:160]}); "
                "set api.ca_file, or api.insecure: true",
                retryable=False,
                unsent=True,
            ) from None
        except urllib3.exceptions.NewConnectionError as exc:  # before timeouts: a subclass
            raise _Failure(
                f"{shown}: {self._connection_problem(exc)}", retryable=True, unsent=True
            ) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise _Failure(
                f"{shown}: no connection within {timeout:g} s (timeout)",
                retryable=True,
                unsent=True,
            ) from None
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise _Failure(
                f"{shown}: no answer within {timeout:g} s (timeout)", retryable=True
            ) from None
        except (urllib3.exceptions.ProtocolError, OSError) as exc:
            raise _Failure(f"{shown}: {self._connection_problem(exc)}", retryable=True) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _Failure(
                f"{shown}: request failed ({self._scrub(str(exc))[:160]})", retryable=True
            ) from None
        code = resp.status
        if len(raw) > MAX_ANSWER_BYTES:
            raise _Failure(
                f"{shown}: HTTP {code} answer larger than {MAX_ANSWER_BYTES} bytes", retryable=False
            )
        message = _server_message(raw, self._secrets())
        if code in (401, 403):
            raise _Failure(
                f"{shown}: HTTP {code}: {KEY_REJECTED}, check api.api_key ({message})",
                retryable=False,
                answered=True,
            )
        if code == 409:
            raise _Conflict(f"{shown}: HTTP 409: {message}")
        if 300 <= code < 400:
            # the configured secrets too: a server may echo the key in the address's path
            where = self._scrub(redact_url(resp.headers.get("Location", "?")))
            raise _Failure(
                f"{shown}: HTTP {code} redirect to {where}; set api.url to the final address",
                retryable=False,
                answered=True,
            )
        if code >= 400:
            message = self._explained(code, message)
            raise _Failure(f"{shown}: HTTP {code}: {message}", retryable=code >= 500, answered=True)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise _Failure(
                f"{shown}: HTTP {code} answer is not valid JSON ({message[:60]!r})", retryable=True
            ) from None

    # ---- the interface

    def _explained(self, code: int, message: str) -> str:
        """A server's error message in the owner's words, where its own are jargon."""
        return message

    def _read_status(self) -> PrinterStatus:
        raise NotImplementedError

    def _send(self, action: Action) -> None:
        raise NotImplementedError

    def status(self) -> PrinterStatus:
        """The printer's state; ``offline`` with the reason when the API cannot tell."""
        self._polling.cut = True
        try:
            st = self._read_status()
        except _Failure as exc:
            st = PrinterStatus(PrinterState.OFFLINE, None, exc.detail)
        except Exception as exc:  # a bug of ours on an answer no test foresaw: never the loop's end
            st = PrinterStatus(
                PrinterState.OFFLINE,
                None,
                f"{self._shown_base}: unreadable answer ({self._scrub(repr(exc))[:80]})",
            )
            if st.detail != self._last_status_problem:
                logger.warning("%s: %s", self.name, st.detail, exc_info=True)
        finally:
            self._polling.cut = False
        # The watcher logs status changes with the printer's name; here only for debugging.
        problem = st.detail if st.state in (PrinterState.OFFLINE, PrinterState.ERROR) else None
        if problem != self._last_status_problem:
            logger.debug(
                "%s %s status: %s",
                self.name,
                self._shown_base,
                problem or f"answers again: {st.state}",
            )
            self._last_status_problem = problem
        return st

    def pause(self) -> ActionResult:
        """Pause the running job: state checked first, bounded retries, never raises."""
        return self._act(Action.PAUSE)

    def cancel(self) -> ActionResult:
        """Cancel the running or paused job: state checked first, bounded retries, never raises."""
        return self._act(Action.CANCEL)

    def resume(self) -> ActionResult:
        """Resume a paused job (the owner's answer to an alert): state checked first."""
        return self._act(Action.RESUME)

    def close(self) -> None:
        with self._lock:
            self._http.close()

    def _checked_status(self) -> PrinterStatus:
        """The status a command is checked against (a client that remembers what the
        watcher's polls are told once leaves it to them: ``OctoPrintClient``)."""
        return self._read_status()

    def _attempt(self, action: Action, sent: bool) -> ActionResult | None:
        """One check-then-command round; a result when settled, _Failure otherwise. ``sent``:
        an earlier round's command went out and its answer was lost."""
        st = self._checked_status()
        job = f" {st.job!r}" if st.job else ""
        if ALREADY.get(action) == st.state:
            return ActionResult(action, Outcome.DONE, f"job{job} was already {st.state}", 0)
        if sent and action is Action.CANCEL and st.state is PrinterState.IDLE:
            # the cancel arrived though its answer did not: "not printing" would tell the
            # owner it did not happen, and offer a cancel again
            return ActionResult(action, Outcome.DONE, "the print stopped after the cancel", 0)
        if action is Action.PAUSE and st.state is PrinterState.PRINTING and not st.pausable:
            why = st.detail or f"{self.name} cannot pause it now"
            return ActionResult(action, Outcome.REFUSED, f"job{job} cannot be paused: {why}", 0)
        if action is Action.RESUME and st.state is PrinterState.PAUSED and not st.resumable:
            why = f" ({st.detail})" if st.detail else ""
            return ActionResult(
                action,
                Outcome.REFUSED,
                f"job{job} is still pausing{why}: nothing resumed; resume it once it shows paused",
                0,
            )
        if st.state in ALLOWED[action]:
            try:
                self._send(action)
            except _Conflict as exc:
                return ActionResult(action, Outcome.REFUSED, exc.detail, 0)
            except _Failure as exc:
                exc.after_send = not exc.unsent and not exc.answered
                raise
            return ActionResult(
                action, Outcome.DONE, f"{self.name} accepted {action} of job{job}", 0
            )
        return ActionResult(action, Outcome.REFUSED, refusal(action, st), 0)

    def _guarded_attempt(self, action: Action, sent: bool) -> ActionResult | None:
        """``_attempt``, an unforeseen error included as a failure not worth retrying: it
        never reaches the watcher, and the owner hears the action failed."""
        try:
            return self._attempt(action, sent)
        except _Failure:
            raise
        except Exception as exc:
            logger.exception("%s %s failed", self.name, action)
            raise _Failure(
                f"unexpected error ({self._scrub(repr(exc))[:80]})", retryable=False
            ) from None

    def _act(self, action: Action) -> ActionResult:
        attempts = 1 + self.api.retries
        delay = self._backoff_s
        sent = False
        for attempt in range(1, attempts + 1):
            try:
                result = self._guarded_attempt(action, sent)
            except _Failure as exc:
                detail, sent = exc.detail, sent or exc.after_send
                if not exc.retryable or attempt == attempts:
                    logger.error(
                        "%s %s failed after %d attempt(s): %s", self.name, action, attempt, detail
                    )
                    if sent:
                        # a command that left and got no answer may still be carried out
                        # (Moonraker answers a PAUSE once Klipper has run it: after a heat-up
                        # it waits behind): not "did not happen", which no pause seen corrects
                        return ActionResult(
                            action,
                            Outcome.UNKNOWN,
                            f"{detail}; the {action} was sent and not answered (it may "
                            "still happen)",
                            attempt,
                        )
                    return ActionResult(action, Outcome.FAILED, detail, attempt)
                logger.warning(
                    "%s %s attempt %d/%d failed: %s; retrying in %g s",
                    self.name,
                    action,
                    attempt,
                    attempts,
                    detail,
                    delay,
                )
                if self._stop.wait(delay):
                    logger.error("%s %s abandoned: shutting down", self.name, action)
                    if sent:  # as above: it may still happen (told "failed", it was not checked)
                        return ActionResult(
                            action,
                            Outcome.UNKNOWN,
                            f"{detail}; the {action} was sent and not answered (it may still "
                            "happen); not retried: shutting down",
                            attempt,
                        )
                    return ActionResult(
                        action, Outcome.FAILED, f"{detail}; not retried: shutting down", attempt
                    )
                delay = min(delay * 2, self._max_backoff_s)
                continue
            assert result is not None  # _attempt returns a result or raises
            result = ActionResult(result.action, result.outcome, result.detail, attempt)
            log = logger.info if result.outcome is Outcome.DONE else logger.warning
            log("%s %s %s: %s", self.name, action, result.outcome, result.detail)
            return result
        raise AssertionError("unreachable")  # the loop always returns


def _octoprint_state(flags: dict[str, Any], text: str) -> PrinterState:
    """The printer's state from OctoPrint's ``state.flags`` and its text."""
    if flags.get("cancelling"):
        # OctoPrint still says printing, but ignores a pause: it is ending
        return PrinterState.IDLE
    if flags.get("printing") and _SENDING_TO_SD.search(text):
        # copying a file onto the printer's SD card: "printing" to OctoPrint's flags, but
        # nothing is printed (the camera watched an idle bed for the upload's minutes) and a
        # pause is taken and does nothing
        return PrinterState.IDLE
    if flags.get("paused") or flags.get("pausing"):
        return PrinterState.PAUSED
    if flags.get("printing") or flags.get("resuming") or flags.get("finishing"):
        return PrinterState.PRINTING
    if flags.get("error") or flags.get("closedOrError"):
        return PrinterState.ERROR
    return PrinterState.IDLE


def _octoprint_heaters(temperature: object) -> dict[str, tuple[float, float]]:
    """OctoPrint's ``temperature`` object as heaters (its hotends ``tool0``... and the bed; a
    chamber heats for long, not only at a print's start): {} where it says none."""
    if not isinstance(temperature, dict):
        return {}
    names = [n for n in temperature if n == "bed" or n.startswith("tool")]
    return _heaters(temperature, names, "actual")


def _heaters(
    readings: dict[str, Any], names: Sequence[str], actual: str
) -> dict[str, tuple[float, float]]:
    """The ``names`` of ``readings`` that are heaters with numbers for their temperature (the
    key ``actual``) and ``target``: name: (temperature, target). One not reported is left out."""
    heaters = {}
    for name in names:
        reading = readings.get(name)
        if not isinstance(reading, dict):
            continue
        # a reading no float holds (hundreds of digits) made the whole answer unreadable: the
        # printer was shown offline
        now, target = number(reading.get(actual)), number(reading.get("target"))
        if now is not None and target is not None:
            heaters[name] = now, target
    return heaters


class OctoPrintClient(_HttpPrinter):
    """OctoPrint's REST API: state from ``/api/printer`` flags, commands to ``/api/job``."""

    name = "OctoPrint"
    # the last status was of a print from the printer's SD card ("Printing from SD"), or of
    # one paused since: a printer that prints from its card goes on without OctoPrint
    _from_sd = False
    # the last status OctoPrint gave was of a print (printing or paused): a printer lost
    # since (disconnected, OctoPrint restarted) has lost that print
    _in_print = False
    # why the key may not pause or cancel ("": it may, or OctoPrint does not say); None: not
    # asked yet (once a client: a reload, maybe with another key, asks again)
    _cannot_act: str | None = None

    def carry_on(self, old: OctoPrintClient) -> None:
        """What ``old``, the client before a reload, knew of the print (a settings save while
        OctoPrint had lost its printer mid-print must not end that print to the watcher)."""
        self._from_sd, self._in_print = old._from_sd, old._in_print

    def _checked_status(self) -> PrinterStatus:
        """What the watcher's polls are told once (a print lost, how it ended) is left for
        them: a Cancel pressed just after OctoPrint lost its printer took that news, and the
        paused print's end became the owner's cancel."""
        kept = self._from_sd, self._in_print
        try:
            return super()._checked_status()
        finally:
            self._from_sd, self._in_print = kept

    def _read_status(self) -> PrinterStatus:
        try:
            data = self._request(
                "GET",
                "/api/printer?exclude=sd",
                timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S),
            )
        except _Conflict as exc:
            return self._not_operational(exc.detail)
        state_obj = data.get("state") if isinstance(data, dict) else None
        flags = state_obj.get("flags") if isinstance(state_obj, dict) else None
        if not isinstance(state_obj, dict) or not isinstance(flags, dict):
            raise _Failure(
                f"GET {self._shown_base}/api/printer: answer has no state.flags", retryable=True
            )
        text = str(state_obj.get("text", ""))
        state = _octoprint_state(flags, text)
        was_in_print, was_from_sd = self._in_print, self._from_sd
        if state is PrinterState.PRINTING:
            self._from_sd = "from SD" in text
        elif state is not PrinterState.PAUSED:
            self._from_sd = False
        self._in_print = state in (PrinterState.PRINTING, PrinterState.PAUSED)
        job, printed = (
            self._job() if state in (PrinterState.PRINTING, PrinterState.PAUSED) else (None, None)
        )
        ended = (
            self._how_it_ended(was_from_sd) if was_in_print and state is PrinterState.IDLE else ""
        )
        return PrinterStatus(
            state,
            job,
            f"OctoPrint: {self._their_words(text)}" if text else "",
            printed,
            # its last moves queued, OctoPrint takes a pause and does nothing
            pausable=not flags.get("finishing"),
            # still pausing, OctoPrint takes a resume and does nothing: the print stays paused
            resumable=not flags.get("pausing"),
            ended=ended,
            heating=heating(_octoprint_heaters(data.get("temperature"))),
            cannot_act=self._cannot_act or "",
        )

    def status(self) -> PrinterStatus:
        """A poll's status, with what the key may not do asked once (in a poll only: the status
        read before a command keeps to its three requests, which the daemon's health check
        allows a command's attempt)."""
        st = super().status()
        if st.state is PrinterState.OFFLINE or self._cannot_act is not None or self._stop.is_set():
            return st
        return replace(st, cannot_act=self._permissions())

    def _permissions(self) -> str:
        """Why the key's OctoPrint user may not pause or cancel (``/api/currentuser``: its
        permissions; "" where it may, or OctoPrint does not tell). Said once in the log."""
        if self._cannot_act is None:
            try:
                data = self._request(
                    "GET", "/api/currentuser", timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S)
                )
            except _Failure as exc:
                if not exc.answered:
                    return ""  # asked again at the next poll
                data = None  # an OctoPrint without it (before 1.5): not known
            granted = data.get("permissions") if isinstance(data, dict) else None
            self._cannot_act = ""
            if isinstance(granted, list) and "PRINT" not in granted:
                self._cannot_act = (
                    "the API key's OctoPrint user lacks the Print permission: the watchdog "
                    "watches, but cannot pause or cancel a print (give that user the Print "
                    "permission in OctoPrint's Access Control, or set another key)"
                )
                logger.warning("%s %s: %s", self.name, self._shown_base, self._cannot_act)
        return self._cannot_act

    def _how_it_ended(self, from_sd: bool) -> str:
        """How the print just seen ending ended: "finished" (its job's progress at 100%),
        "cancelled" (short of it), "lost" (OctoPrint restarted, or was disconnected from its
        printer and connected again, between two polls: it has no job selected any more, which
        a cancel leaves selected), "" where OctoPrint does not say."""
        try:
            data = self._request(
                "GET", "/api/job", timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S)
            )
            done = data["progress"]["completion"]
            selected = data["job"]["file"]["name"]
        except (_Failure, TypeError, KeyError):
            return ""
        if done is None and selected is None:
            # a print the printer reads from its SD card may go on: not said to be lost
            return "" if from_sd else "lost"
        if done is None:  # OctoPrint resets the job's progress at a cancel
            return "cancelled"
        if isinstance(done, bool) or not isinstance(done, int | float):
            return ""
        return "finished" if done >= 100 else "cancelled"

    def _not_operational(self, detail: str) -> PrinterStatus:
        """OctoPrint's 409, whenever no printer is operational: disconnected, or in its error
        state, which ends a print (a thermal runaway, a lost connection)."""
        in_print, self._in_print = self._in_print, False
        if error := self._error_state():
            self._from_sd = False
            return PrinterStatus(PrinterState.ERROR, None, f"OctoPrint: {error}")
        if self._from_sd:
            # OctoPrint restarted (an update, a plugin) or was disconnected from the printer:
            # a print it streamed has stopped, one from the SD card goes on. Not its end: the
            # print's alert and its buttons stay, no "print done" is told. (A serial link lost
            # is OctoPrint's "Offline after error": an error, above)
            return PrinterStatus(
                PrinterState.OFFLINE,
                None,
                "OctoPrint has lost the printer, which was printing from its SD card and may "
                f"still be ({detail})",
            )
        if in_print:
            # OctoPrint streamed the print: disconnected from its printer (or restarted), the
            # print is lost. An end by an error, told as loud; it was a paused print's "cancel",
            # and a printing one's "finished, or cancelled"
            return PrinterStatus(
                PrinterState.ERROR,
                None,
                f"OctoPrint lost its printer during the print: no printer connected ({detail})",
            )
        return PrinterStatus(
            PrinterState.IDLE,
            None,
            f"no printer connected to OctoPrint ({detail})",
            sees_printer=False,
        )

    def _error_state(self) -> str | None:
        """OctoPrint's error state and message, when its printer is in one (``/api/job``
        answers in every state); None when it is not, or cannot be told."""
        try:
            data = self._request(
                "GET", "/api/job", timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S)
            )
        except _Failure:
            return None
        state = data.get("state") if isinstance(data, dict) else None
        if not isinstance(state, str) or not state.startswith(("Error", "Offline after error")):
            return None
        error = data.get("error")
        return self._their_words(f"{state}: {error}" if isinstance(error, str) and error else state)

    def _job(self) -> tuple[str | None, float | None]:
        """The job's file name and seconds it has printed (``progress.printTime``: its
        pauses left out)."""
        try:
            data = self._request(
                "GET", "/api/job", timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S)
            )
        except _Failure:
            return None, None  # the state is what matters; a missing name is not worth a failure
        try:
            name = data["job"]["file"]["name"]
        except (TypeError, KeyError):
            name = None
        try:
            printed = data["progress"]["printTime"]
        except (TypeError, KeyError):
            printed = None
        return job_name(name), seconds(printed)

    def _send(self, action: str) -> None:
        # Always an explicit "action": without it OctoPrint toggles pause and resume.
        body = (
            {"command": "cancel"} if action == "cancel" else {"command": "pause", "action": action}
        )
        try:
            self._request("POST", "/api/job", body=body, timeout=self.api.timeout_s)
        except _Failure as exc:
            if self._cannot_act and KEY_REJECTED in exc.detail:  # the key is good: not "check it"
                raise _Failure(
                    f"POST {self._shown_base}/api/job: {self._cannot_act}",
                    retryable=False,
                    answered=True,
                ) from None
            raise


# Klipper's hotend and bed objects (a printer without a heated bed has no ``heater_bed``:
# Klipper leaves it out of its answer)
KLIPPER_HEATERS = ("extruder", "heater_bed")


class MoonrakerClient(_HttpPrinter):
    """Moonraker's API: ``print_stats`` and ``webhooks`` objects, ``/printer/print/<action>``."""

    name = "Moonraker"

    def _explained(self, code: int, message: str) -> str:
        """Moonraker answers 503 "Klippy Host not connected" while Klipper is stopped or
        restarting: an owner reads "Klippy Host" as nothing they know."""
        if code == 503 and "klippy" in message.lower():
            return f"Klipper is not running or not connected to Moonraker ({message})"
        return message

    def _read_status(self) -> PrinterStatus:
        path = f"/printer/objects/query?print_stats&webhooks&{'&'.join(KLIPPER_HEATERS)}"
        data = self._request("GET", path, timeout=min(self.api.timeout_s, STATUS_TIMEOUT_S))
        try:
            status = data["result"]["status"]
            hooks, stats = status["webhooks"], status["print_stats"]
            klippy, message = hooks["state"], hooks.get("state_message", "")
            job_state, job = stats["state"], stats.get("filename")
            if not isinstance(klippy, str) or not isinstance(job_state, str):
                raise TypeError
        except (TypeError, KeyError, AttributeError):
            raise _Failure(
                f"GET {self._shown_base}{path}: answer lacks webhooks/print_stats state",
                retryable=True,
            ) from None
        if klippy != "ready":
            down = PrinterState.ERROR if klippy in ("shutdown", "error") else PrinterState.OFFLINE
            # Klipper's shutdown texts run over several lines: one line in the log and the alert
            shown = self._their_words(f"Klippy {klippy}: {message}")
            return PrinterStatus(down, None, shown)
        state = {
            "printing": PrinterState.PRINTING,
            "paused": PrinterState.PAUSED,
            "error": PrinterState.ERROR,
        }.get(job_state, PrinterState.IDLE)
        why = stats.get("message")
        detail = f"Klipper print_stats.state: {self._their_words(job_state)}"
        if state is PrinterState.ERROR and isinstance(why, str) and why:
            detail = f"Klipper stopped the print: {self._their_words(why)}"
        job = job_name(job)
        total = seconds(stats.get("total_duration"))
        started = None if total is None else time.time() - total
        return PrinterStatus(
            state,
            job,
            detail,
            seconds(stats.get("print_duration")),
            started,
            total,
            ended={"complete": "finished", "cancelled": "cancelled"}.get(job_state, ""),
            heating=heating(_heaters(status, KLIPPER_HEATERS, "temperature")),
        )

    def _send(self, action: Action) -> None:
        path = f"/printer/print/{action}"
        data = self._request("POST", path, timeout=self.api.timeout_s)
        if not isinstance(data, dict) or "result" not in data:
            raise _Failure(f"POST {self._shown_base}{path}: answer has no result", retryable=False)


# --------------------------------------------------------------------------- no network


class NoPrinter:
    """``kind: none``: no API, so the camera is watched all the time and alerts only notify."""

    def status(self) -> PrinterStatus:
        return PrinterStatus(
            PrinterState.PRINTING, None, "no printer API configured: watching all the time"
        )

    def pause(self) -> ActionResult:
        return self._skipped(Action.PAUSE)

    def cancel(self) -> ActionResult:
        return self._skipped(Action.CANCEL)

    def resume(self) -> ActionResult:
        return self._skipped(Action.RESUME)

    def close(self) -> None:
        pass

    @staticmethod
    def _skipped(action: Action) -> ActionResult:
        return ActionResult(action, Outcome.SKIPPED, "no printer API configured", 0)


class SimulatedPrinter:
    """An in-process printer for the demo and replay: starts printing, and answers pause,
    resume and cancel by the rules a real printer's client follows."""

    def __init__(self, job: str = "demo.gcode") -> None:
        self._lock = threading.Lock()
        self._state = PrinterState.PRINTING
        self._job: str | None = job
        self.actions: list[Action] = []  # what was asked of it, in order

    def status(self) -> PrinterStatus:
        with self._lock:
            return PrinterStatus(self._state, self._job, "simulated printer")

    def start_print(self, job: str = "demo.gcode") -> None:
        with self._lock:
            self._state, self._job = PrinterState.PRINTING, job

    def resume(self) -> ActionResult:
        return self._change(Action.RESUME)

    def pause(self) -> ActionResult:
        return self._change(Action.PAUSE)

    def cancel(self) -> ActionResult:
        return self._change(Action.CANCEL)

    def close(self) -> None:
        pass

    def _change(self, action: Action) -> ActionResult:
        with self._lock:
            self.actions.append(action)
            if ALREADY.get(action) == self._state:
                return ActionResult(
                    action, Outcome.DONE, f"simulated printer was already {self._state}", 1
                )
            if self._state not in ALLOWED[action]:
                st = PrinterStatus(self._state, self._job, "simulated printer")
                return ActionResult(action, Outcome.REFUSED, refusal(action, st), 1)
            self._state = AFTER[action]
            if self._state is PrinterState.IDLE:
                self._job = None
            return ActionResult(action, Outcome.DONE, f"simulated printer is {self._state}", 1)


def longest_action_s(
    api: ApiConfig, *, backoff_s: float = BACKOFF_S, max_backoff_s: float = MAX_BACKOFF_S
) -> float:
    """The longest a pause or cancel can take against an API that never answers: every
    attempt's status check (two requests on OctoPrint) and command time out, with the waits
    between attempts. The daemon's health allows for it: a pause retried against a hung API
    must not pass for a hung watcher (systemd would kill it part-way through)."""
    if api.kind == "none":
        return 0.0
    attempts = 1 + api.retries
    per_attempt = 2 * min(api.timeout_s, STATUS_TIMEOUT_S) + api.timeout_s
    waits = sum(min(backoff_s * 2**k, max_backoff_s) for k in range(attempts - 1))
    return attempts * per_attempt + waits


def make_printer(
    api: ApiConfig, stop: threading.Event | None = None, *, backoff_s: float = BACKOFF_S
) -> PrinterClient:
    """The client for ``api.kind``; ``stop`` cuts retry waits short at shutdown."""
    if api.kind == "octoprint":
        return OctoPrintClient(api, stop, backoff_s=backoff_s)
    if api.kind == "moonraker":
        return MoonrakerClient(api, stop, backoff_s=backoff_s)
    return NoPrinter()
