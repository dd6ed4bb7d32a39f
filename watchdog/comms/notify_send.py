"""Send one notification with Apprise, in a child process: ``python -m watchdog.comms.notify_send``.

Apprise and its service plugins take ~35 MB once imported (the child peaks at ~45 MB): a
child process keeps them out of the daemon (its peak RSS stays within budget), and a service
that hangs is killed with it.
The request comes as JSON on stdin (never in argv, where the URL's secret would show in
``ps``), the answer is one JSON line on stdout::

    in:  {"url", "title", "body", "type": info|success|warning|failure, "attachment": path|null,
          "attachment_name": "heatmap.jpg",
          "ntfy": {"priority": ..., "actions": "http, Resume, https://..., method=POST; ..."}}
    out: {"ok": bool, "permanent": bool, "detail": "...", "unanswered": bool}

``permanent`` is true when the service refused the credentials (HTTP 401/403, SMTP 535): trying
again will not help until the user fixes the URL. ``detail`` is Apprise's last complaint; the
daemon masks secrets in it again before logging it. ``unanswered``: the service took the
request and gave no answer within ``READ_TIMEOUT_S`` (it may well have delivered it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any
from urllib.parse import quote

PERMANENT = re.compile(
    r"\b(401|403|535)\b|unauthori[sz]ed|forbidden|authentication (failed|unsuccessful)|"
    r"invalid (credentials|token|api key)",
    re.IGNORECASE,
)
# a service that refuses a notification for its picture: ntfy's codes and words for it, a
# proxy's "too large" before any service (413), Pushover's attachment size limit
PICTURE_REFUSED = re.compile(
    r"\berror=400(12|14)\b|attachments? (are )?not allowed|attachment (is )?too large|"
    r"\berror=413\b|entity too large|payload too large|attachment.{0,40}exceeds",
    re.IGNORECASE,
)
NTFY_SCHEMES = ("ntfy", "ntfys")
# ntfy.sh's own address, pasted as ntfy's docs show it: Apprise sends it through ntfy
_NTFY_SH = re.compile(r"^https?://ntfy\.sh(/|\?|$)", re.IGNORECASE)
# Apprise reads an answer for 4 s: a service that took the notification and answers later (a
# busy self-hosted server) was sent it again and again. Within the child's SEND_TIMEOUT_S.
READ_TIMEOUT_S = 30


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((record.levelno, record.getMessage()))
        except Exception:  # noqa: BLE001 - a malformed record is simply not captured
            pass


def service(url: str) -> str:
    """The kind of service an Apprise URL sends to, by its scheme: ``ntfys`` for
    ``https://ntfy.sh/topic`` too (it got no buttons and no priority as "https")."""
    scheme = url.strip().split("://", 1)[0].lower()
    return "ntfys" if _NTFY_SH.match(url.strip()) else scheme


def with_ntfy_options(url: str, options: dict[str, str]) -> str:
    """``url`` with ntfy's ``priority``/``actions`` query options added, unless already set."""
    if service(url) not in NTFY_SCHEMES:
        return url
    for key, value in options.items():
        url = with_option(url, key, value)
    return url


MAIL_SCHEMES = ("mailto", "mailtos")
# an email's X-Priority (1 highest, 3 normal) and Importance, by the ntfy priority of its kind:
# a failure left printing came as any newsletter does
MAIL_PRIORITY = {"max": ("1", "high"), "high": ("2", "high"), "low": ("5", "low")}


def with_mail_priority(url: str, priority: str) -> str:
    """An email URL with the headers that mark ``priority`` (Apprise's ``+Header=value``)."""
    if url.split("://", 1)[0].lower() not in MAIL_SCHEMES or priority not in MAIL_PRIORITY:
        return url
    level, importance = MAIL_PRIORITY[priority]
    return with_option(with_option(url, "+X-Priority", level), "+Importance", importance)


def with_option(url: str, key: str, value: str) -> str:
    """``url`` with the query option ``key`` added, unless it is set already (or empty)."""
    # a header's name in any case is the same header (``+x-priority``)
    if value and not re.search(rf"[?&]{re.escape(key)}=", url, re.IGNORECASE):
        url += ("&" if "?" in url else "?") + f"{key}={quote(value, safe='')}"
    return url


def _body_format(service: Any, apprise: Any) -> Any:
    """Our text is plain: said so where the service shows text or HTML (email gets it escaped,
    its lines kept); None for Markdown-only services, which Apprise would escape into the
    links' URLs (a backslash before each ``_`` and ``.``)."""
    formats = service.notify_format
    formats = formats if isinstance(formats, tuple | list | set | frozenset) else (formats,)
    plain = (apprise.NotifyFormat.TEXT, apprise.NotifyFormat.HTML)
    return apprise.NotifyFormat.TEXT if any(f in plain for f in formats) else None


NOT_UNDERSTOOD = "the URL is not one Apprise understands (check its scheme and form)"


def understood(url: str) -> bool:
    """Whether Apprise takes ``url`` (a scheme it knows, in its form), asked by check-config
    before any alert depends on it. Nothing of Apprise's is logged: its complaint names the
    URL, secret and all. Apprise must be installed."""
    import apprise

    log = logging.getLogger("apprise")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return bool(apprise.Apprise().add(url.strip()))


def send(request: dict[str, Any]) -> dict[str, Any]:
    """One notification to one URL; never raises."""
    import apprise

    log = logging.getLogger("apprise")
    log.propagate = False  # nothing of Apprise's reaches stderr unmasked
    log.setLevel(logging.DEBUG)
    capture = _Capture()
    log.addHandler(capture)
    ntfy = dict(request.get("ntfy") or {})
    url = with_ntfy_options(str(request["url"]).strip(), ntfy)
    url = with_mail_priority(url, str(ntfy.get("priority", "")))
    url = with_option(url, "rto", str(READ_TIMEOUT_S))
    ap = apprise.Apprise()
    if not ap.add(url):
        return {
            "ok": False,
            "permanent": True,
            "detail": NOT_UNDERSTOOD,
        }
    attach = None
    if request.get("attachment"):
        attach = apprise.AppriseAttachment()
        name = quote(str(request.get("attachment_name") or "picture.jpg"), safe="")
        attach.add(f"file://{quote(str(request['attachment']))}?name={name}")
    notify_type = {
        "info": apprise.NotifyType.INFO,
        "success": apprise.NotifyType.SUCCESS,
        "warning": apprise.NotifyType.WARNING,
        "failure": apprise.NotifyType.FAILURE,
    }.get(str(request.get("type")), apprise.NotifyType.INFO)

    def notify(attach: Any) -> bool:
        return bool(
            ap.notify(
                body=str(request["body"]),
                title=str(request.get("title") or ""),
                notify_type=notify_type,
                body_format=_body_format(ap[0], apprise),
                attach=attach,
            )
        )

    try:
        ok = notify(attach)
        refused = _picture_refused(capture) if attach is not None and not ok else ""
        if refused:
            # the alert matters more than its picture: a server that takes no attachments
            # (ntfy's own default) refused every failure alert, retried until dropped
            capture.lines.clear()
            ok = notify(None)
    except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed attempt, not a crash
        return {"ok": False, "permanent": False, "detail": f"{type(exc).__name__}: {exc}"}
    if ok:
        return {"ok": True, "permanent": False, "detail": "", "picture_refused": refused}
    return _refusal(ap[0], capture)


def _refusal(service: Any, capture: _Capture) -> dict[str, Any]:
    """The answer for a notification Apprise did not deliver, from what it logged."""
    complaints = [msg for level, msg in capture.lines if level >= logging.WARNING]
    if (
        complaints
        and _recipients(service) > 1
        and any(level == logging.INFO and msg.startswith("Sent ") for level, msg in capture.lines)
    ):
        # one URL of several recipients, some of which took it (Apprise says "Sent ..." of
        # each): sent again, those would get it again at every retry, for a day. Only where
        # the URL has several: one recipient's picture sent and its text refused (Telegram's
        # picture first, a long text in parts) is a failed send, tried again.
        return {"ok": True, "permanent": False, "detail": "", "partly_refused": complaints[-1]}
    everything = " ".join(msg for _, msg in capture.lines)
    if "read timed out" in everything.lower():
        return {
            "ok": False,
            "permanent": False,
            "unanswered": True,
            "detail": "the service took the notification and gave no answer in time",
        }
    return {
        "ok": False,
        "permanent": bool(PERMANENT.search(" ".join(complaints) or everything)),
        # whole: the daemon masks the URL's secrets first and cuts afterwards (a cut here could
        # leave half a secret that no mask recognises)
        "detail": complaints[-1] if complaints else "the service did not accept the notification",
    }


def _recipients(service: Any) -> int:
    """How many recipients an Apprise URL names (topics, chats, addresses); 1 where the
    service does not say."""
    try:
        return max(1, len(service))
    except TypeError:
        return 1


def _picture_refused(capture: _Capture) -> str:
    """The service's complaint where it refused the notification for its attachment (ntfy:
    attachments not allowed, 40014, or too large, 40012), else ""."""
    complaints = [msg for level, msg in capture.lines if level >= logging.WARNING]
    return next((msg for msg in reversed(complaints) if PICTURE_REFUSED.search(msg)), "")


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        result = send(request)
    except (ValueError, KeyError, TypeError) as exc:
        result = {"ok": False, "permanent": True, "detail": f"bad request to the sender: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
