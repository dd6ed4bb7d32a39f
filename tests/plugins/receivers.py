"""pytest plugin: local receivers for real Apprise notifications, on 127.0.0.1, that record.

Fixtures (function scope; each can be stopped and started again on the same port):

``ntfy_receiver``
    Speaks ntfy's publish protocol: ``POST /`` with a JSON body (``topic``, ``title``,
    ``message``) and ``PUT|POST /<topic>`` with the attachment as the body and ``title``,
    ``message``, ``filename`` as query parameters; ``X-Priority``, ``X-Actions``, ``X-Title``
    headers. ``.url(topic, user=None, password=None)`` is the Apprise URL (``ntfy://...``);
    ``.messages`` the ``NtfyMessage`` records; ``.refuse(401)`` answers every request with that
    status (as ntfy does for bad credentials), ``.refuse(None)`` accepts again.
``webhook_receiver``
    Records JSON POSTs (Apprise's ``json://``): ``.url(path)``, ``.posts`` (decoded JSON bodies).
``smtp_receiver``
    An aiosmtpd server: ``.url(to)`` is an Apprise ``mailto://`` URL, ``.mails`` the received
    ``email.message.EmailMessage`` objects.

``wait_for(what, check, timeout)`` polls a condition (no fixed sleeps).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.plugins.mosquitto import free_port

HOST = "127.0.0.1"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def parse_actions(header: str) -> list[dict[str, str]]:
    """ntfy's short action format: ``action, label, url, key=value, ...; ...``."""
    actions = []
    for part in filter(None, (p.strip() for p in header.split(";"))):
        fields = [f.strip() for f in part.split(",")]
        action = {"action": fields[0], "label": fields[1], "url": fields[2]}
        for extra in fields[3:]:
            key, _, value = extra.partition("=")
            action[key.strip()] = value.strip()
        actions.append(action)
    return actions


@dataclass
class NtfyMessage:
    topic: str
    title: str
    message: str
    priority: str
    actions: list[dict[str, str]]
    attachment: bytes | None
    filename: str | None
    authorization: str | None
    raw_headers: dict[str, str] = field(repr=False, default_factory=dict)


class _Recorder:
    """A ThreadingHTTPServer on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status: int | None = None  # when set, every request is refused with it
        self.error = "unauthorized"
        self.refused_bodies: tuple[bytes, int] | None = None  # refuse_containing
        self.requests = 0
        self.answer_after_s = 0.0  # a slow service: it takes the request, answers this late
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.start()

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    def refuse(self, status: int | None, error: str = "unauthorized") -> None:
        self.status = status
        self.error = error  # the ``error`` of the JSON answer (ntfy's, which Apprise quotes)

    def refuse_containing(self, needle: bytes, status: int) -> None:
        """Answer ``status`` to every request whose body holds ``needle`` (a service refusing
        one notification, too large say, and taking the others)."""
        self.refused_bodies = (needle, status)

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._lock:
                    recorder.requests += 1
                time.sleep(recorder.answer_after_s)
                status = recorder.status
                if recorder.refused_bodies is not None and recorder.refused_bodies[0] in body:
                    status = recorder.refused_bodies[1]
                if status is not None:
                    data = json.dumps(
                        {"code": status * 100 + 1, "http": status, "error": recorder.error}
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                recorder.handle(self, body)

            do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    @staticmethod
    def reply_json(
        handler: BaseHTTPRequestHandler, data: dict[str, Any], status: int = 200
    ) -> None:
        body = json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class NtfyReceiver(_Recorder):
    def __init__(self) -> None:
        self.messages: list[NtfyMessage] = []
        # a server whose server.yml sets no attachment-cache-dir (ntfy's own default) answers
        # a notification with a picture as ntfy does: 400, code 40014
        self.takes_pictures = True
        super().__init__()

    def url(
        self,
        topic: str = "printer",
        user: str | None = None,
        password: str | None = None,
        **query: str,
    ) -> str:
        auth = f"{user}:{password}@" if user else ""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ntfy://{auth}{HOST}:{self.port}/{topic}" + (f"?{qs}" if qs else "")

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        split = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if split.path in ("", "/"):
            data = json.loads(body)
            topic, attachment = data.get("topic", ""), None
            title, message, filename = data.get("title", ""), data.get("message", ""), None
        else:
            if not self.takes_pictures:
                refusal = {
                    "code": 40014,
                    "http": 400,
                    "error": "invalid request: attachments not allowed",
                    "link": "https://ntfy.sh/docs/config/#attachments",
                }
                self.reply_json(handler, refusal, 400)
                return
            topic, attachment = split.path.strip("/"), body
            title = query.get("title", headers.get("x-title", ""))
            message, filename = query.get("message", ""), query.get("filename")
        self.messages.append(
            NtfyMessage(
                topic,
                title,
                message,
                headers.get("x-priority", "default"),
                parse_actions(headers.get("x-actions", "")),
                attachment,
                filename,
                headers.get("authorization"),
                headers,
            )
        )
        self.reply_json(
            handler,
            {
                "id": f"m{len(self.messages)}",
                "time": int(time.time()),
                "event": "message",
                "topic": topic,
            },
        )


class WebhookReceiver(_Recorder):
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        super().__init__()

    def url(self, path: str = "hook", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"json://{auth}{HOST}:{self.port}/{path}"

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.posts.append(json.loads(body))
        self.reply_json(handler, {"ok": True})

    @staticmethod
    def attachment(post: dict[str, Any]) -> bytes:
        [attached] = post["attachments"]
        return base64.b64decode(attached["base64"])


class SmtpReceiver:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.mails: list[email.message.EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                receiver.mails.append(
                    email.message_from_bytes(envelope.content, policy=email.policy.default)
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname=HOST, port=self.port)
        self.controller.start()

    def url(self, to: str = "owner@example.com") -> str:
        return f"mailto://{HOST}:{self.port}?from=watchdog@example.com&to={to}&mode=insecure"

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def ntfy_receiver() -> Iterator[NtfyReceiver]:
    receiver = NtfyReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    pytest.importorskip("aiosmtpd", reason="aiosmtpd is part of the test extra")
    receiver = SmtpReceiver()
    yield receiver
    receiver.stop()
