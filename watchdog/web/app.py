"""The dashboard's pages and JSON API, installed on the daemon's HTTP server.

Pages: ``/`` (one page: printers, incidents, where to look; hand-written JS polls the API
every 2 s), ``/login``. API (JSON): ``/api/state``, ``/api/printers/<p>/timeline?after=&clock=``,
``/api/printers/<p>/frame.jpg`` (the latest camera frame, no heatmap), ``/api/incidents``,
``/api/incidents/<p>/<id>/<file>`` (its pictures), and the POSTs that change something:
``/api/command`` (every button: a ``watchdog.control.Command`` handed to the daemon's
``dispatch``), ``/api/printers/<p>/settings`` and ``.../settings/reset``.

Guards, in order, for every request but ``/healthz`` and a phone button's ``/actions/<token>``:
the Host header must name this server (a web site cannot reach the page through DNS
rebinding): without a password a loopback address or localhost; with one an IP address,
localhost, this machine's name (also with ``.local``), a phone button's ``actions_url`` host
or a name in ``http.host_names`` (``own_names``); with a password every page, image and API
call needs a session (``/login`` excepted); every
POST needs the page's CSRF token in ``X-CSRF-Token`` (or the login form's field) and, when
the browser sends one, an ``Origin`` equal to this server's.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, redirect, request, send_from_directory
from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.wrappers import Response as AnyResponse

from watchdog import overrides
from watchdog.comms.http import json_response, text
from watchdog.comms.outbox import MQTT, Outbox
from watchdog.config import Config, ConfigError, HttpConfig, host_name_form, is_loopback_host
from watchdog.control import Applied, Command, CommandResult, Verb, saved_answers
from watchdog.detection.bundle import Bundle
from watchdog.history import History
from watchdog.incidents import (
    LEAD_UP,
    SAFE_NAME,
    ThrottledLog,
    closing_answer,
    incidents_root,
    list_incidents,
    printers_on_disk,
    shown,
)
from watchdog.web import auth

STATIC = Path(__file__).parent / "static"
COOKIE = "watchdog_session"
LOGIN_COOKIE = "watchdog_login"
logger = logging.getLogger(__name__)

CHECK_WAIT_S = 5.0  # a login waits this long for the password check in progress
_INCIDENT_FILES = {"frame.jpg", "heatmap.jpg"}


class Backend(Protocol):
    """What the dashboard needs of the daemon."""

    config: Config
    bundle: Bundle
    histories: dict[str, History]

    def status(self) -> dict[str, Any]: ...

    def dispatch(self, command: Command) -> CommandResult: ...

    def save_settings(
        self, printer: str, changes: dict[str, Any], drawn_on: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Applied]: ...

    def reset_settings(self, printer: str) -> tuple[str, Applied]: ...


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def own_names(cfg: HttpConfig, config: Config) -> frozenset[str]:
    """The names a password-guarded page answers to (IP addresses aside): localhost, this
    machine's name (in full and its first label) and ``<first label>.local`` (mDNS),
    ``http.host_names``, and the host of each phone button's ``actions_url``."""
    machine = socket.gethostname()
    short = machine.split(".")[0]  # a name given in full (pi.home.lan) is typed short too
    names = [machine, short, f"{short}.local"]
    names += [urlsplit(t.actions_url).hostname or "" for t in config.notify if t.actions_url]
    forms = [form for name in names if (form := host_name_form(name))]  # None: never sent
    return frozenset({"localhost", *cfg.host_names, *forms})


def _names_this_server(host: str, names: frozenset[str]) -> bool:
    """``host`` (a Host header's name, port taken off) is an IP address or one of ``names``
    (``own_names``, compared in the one form ``host_name_form`` gives both): a web site can
    rebind a name of its own to this machine's address, never an address."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host_name_form(host) in names
    return True


class Dashboard:
    """Auth state and routes; ``install(app)`` puts them on the server's Flask app."""

    def __init__(self, backend: Backend, cfg: HttpConfig, storage_dir: Path) -> None:
        self.backend = backend
        self.cfg = cfg
        self.storage_dir = Path(storage_dir)
        # a generated one is written for the owner to read once, never printed
        self.password_hash = auth.password_hash(cfg, self.storage_dir)
        self.sessions = auth.Sessions(cfg.session_hours * 3600)
        self.limiter = auth.LoginLimiter(cfg.login_attempts_per_minute)
        self.proxy_limiter = auth.LoginLimiter(
            cfg.login_attempts_per_minute * auth.PROXY_LIMIT_FACTOR
        )
        self.proxies = auth.Proxies(cfg.trusted_proxies)
        self.names = own_names(cfg, backend.config)  # http and notify wait for a restart
        self.checking = threading.BoundedSemaphore(1)
        self.refusals_said = ThrottledLog(60.0)
        # one for the page's every look: what it cannot read is said once a minute, not at
        # each poll of the Incidents view
        self.outbox = Outbox(self.storage_dir)
        self.open_csrf = secrets.token_urlsafe(32)  # the page's token when no login is needed
        # this start of the daemon: a page made by an earlier one reloads (its token is stale)
        self.boot = secrets.token_urlsafe(8)
        self.templates = Environment(
            loader=PackageLoader("watchdog.web", "templates"),
            autoescape=select_autoescape(["html"]),
        )

    @property
    def login_required(self) -> bool:
        return self.password_hash is not None

    # ----------------------------------------------------------------- guards

    def _session(self) -> auth.Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _scraper(self) -> bool:
        """A GET of the status, metrics or a latest heatmap with ``http.scrape_token`` as its
        bearer: a Prometheus or a Home Assistant that cannot log in through the page's form."""
        token = self.cfg.scrape_token
        if token is None or request.method not in ("GET", "HEAD"):
            return False
        path = request.path
        if not (path in ("/status", "/metrics") or SCRAPED_PICTURE.fullmatch(path)):
            return False
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and auth.same(value.strip(), token.get_secret_value())

    def _named_right(self, host: str) -> bool:
        """The Host names this server; a trusted proxy routes by name itself, and a scraper's
        token proves more than a name could."""
        return (
            _names_this_server(host, self.names)
            or self.proxies.trusted(request.remote_addr)
            or self._scraper()
        )

    def _csrf_expected(self) -> str | None:
        if not self.login_required:
            return self.open_csrf
        session = self._session()
        return session.csrf if session else None

    def guard(self) -> AnyResponse | None:
        path = request.path
        if path == "/healthz" or path.startswith("/actions/"):
            return None  # a phone button carries its own capability token (watchdog.comms.actions)
        # Host: without a password a loopback address or localhost, never a name (a site
        # whose name resolves to 127.0.0.1 would read the page from the owner's browser)
        host = _host_name(request.host)
        if not self.login_required and not is_loopback_host(host):
            return text("403 this page answers to a loopback address or localhost only", 403)
        if self.login_required and not self._named_right(host):
            # a site the owner visits, its name rebound to this address, would spend the
            # owner's login attempts (their limit is the owner's browser's) guessing
            if not host:  # the server takes a Host that is no name nor address for none
                return text(
                    "403 this page does not answer to that name (no valid host name or "
                    "address in the request): reach it by its IP address",
                    403,
                )
            shown = host if len(host) <= 80 else host[:77] + "..."
            return text(
                f"403 this page does not answer to the name {shown!r}: reach it by its IP "
                "address, or add the name to http.host_names in the config (restart to apply)",
                403,
            )
        if path.startswith(OWN_PAGES_ONLY) and _embedded_by_another_site():
            return text("403 cross-site request refused", 403)
        if (
            self.login_required
            and path not in ("/login", "/static/style.css", "/static/login.js")
            and self._session() is None
            and not self._scraper()
        ):
            if request.method == "GET" and path == "/":
                return redirect("/login", 303)
            return text("401 log in first: /login", 401)
        return self._post_guard(path) if request.method == "POST" else None

    def _post_guard(self, path: str) -> AnyResponse | None:
        """A POST from this site's own page, with its token (None: let it through)."""
        origin = request.headers.get("Origin")
        if origin is not None and not _same_site(origin, request.host):
            return text("403 cross-site request refused", 403)
        if path == "/login":
            expected = request.cookies.get(LOGIN_COOKIE)
            given = request.form.get("csrf")
        else:
            expected = self._csrf_expected()
            given = request.headers.get("X-CSRF-Token")
        if not auth.same(given, expected) and path == "/login":
            # the form's token lasts 10 minutes and another login page replaces it: the
            # form again, with a new one (nothing is logged in without it)
            return self.login_form(
                "The form expired (open over 10 minutes, or another login page was "
                "opened since): enter the password again.",
                403,
            )
        if not given:  # no page of ours sends a request without it
            return text("403 no page token (X-CSRF-Token): send it as the page does", 403)
        if not auth.same(given, expected):
            return text(
                "403 this page is out of date (the watchdog restarted since it was "
                "opened?): reload it",
                403,
            )
        return None

    def _cookie(self, response: AnyResponse, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=request.is_secure
            or self.proxies.https(
                request.remote_addr or "", request.headers.get("X-Forwarded-Proto")
            ),
        )

    # ----------------------------------------------------------------- routes

    def install(self, app: Flask) -> None:
        app.before_request(self.guard)
        app.after_request(_own_pages_only)
        app.add_url_rule("/", "index", self.index)
        app.add_url_rule("/login", "login_form", self.login_form, methods=["GET"])
        app.add_url_rule("/login", "login", self.login, methods=["POST"])
        app.add_url_rule("/logout", "logout", self.logout, methods=["POST"])
        app.add_url_rule("/static/<name>", "static_file", self.static_file)
        app.add_url_rule("/api/state", "state", self.state)
        app.add_url_rule("/api/printers/<name>/timeline", "timeline", self.timeline)
        app.add_url_rule("/api/printers/<name>/frame.jpg", "frame", self.frame)
        app.add_url_rule("/api/incidents", "incidents", self.incidents)
        app.add_url_rule(
            "/api/incidents/<printer>/<incident>/<path:file>", "incident_file", self.incident_file
        )
        app.add_url_rule("/api/command", "command", self.command, methods=["POST"])
        app.add_url_rule(
            "/api/printers/<name>/settings", "settings", self.settings, methods=["POST"]
        )
        app.add_url_rule(
            "/api/printers/<name>/settings/reset", "reset", self.reset, methods=["POST"]
        )

    def _page(self, template: str, **values: Any) -> Response:
        html = self.templates.get_template(template).render(**values)
        response = Response(html, 200, mimetype="text/html")
        # blob: the mask editor's frame, fetched to read why a camera gave none
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        return response

    def index(self) -> Response:
        return self._page(
            "index.html",
            csrf=self._csrf_expected() or "",
            login=self.login_required,
            boot=self.boot,
        )

    def login_form(self, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(32)
        response = self._page("login.html", csrf=token, error=error)
        response.status_code = status
        self._cookie(response, LOGIN_COOKIE, token, 600)
        return response

    def login(self) -> AnyResponse:
        if not self.login_required:
            return redirect("/", 303)
        peer = request.remote_addr or "?"
        address = self.proxies.client(peer, request.headers.get("X-Forwarded-For"))
        # through a proxy each client has its own limit, and the proxy PROXY_LIMIT_FACTOR
        # times that for all the tries their own limits let through: a host sharing a
        # trusted network, writing a new client into X-Forwarded-For at each try, is held to
        # that (one client's refused tries take nothing from the others)
        if not self.limiter.attempt(address) or (
            address != peer and not self.proxy_limiter.attempt(peer)
        ):
            return self.login_form("Too many attempts: wait a minute.", 429)
        # one check at a time: each costs the hash's memory and CPU (scrypt: 32 MiB)
        if not self.checking.acquire(timeout=CHECK_WAIT_S):
            return self.login_form("Busy: try again in a moment.", 429)
        try:
            right = auth.check_password(self.password_hash or "", request.form.get("password", ""))
        finally:
            self.checking.release()
        if not right:
            # said (one line a minute): logins refused went unseen, however many came
            self.refusals_said(
                logger,
                logging.WARNING,
                "login-refused",
                "dashboard: a login refused (not the password), from %s; one such line a minute",
                address,
            )
            return self.login_form("Wrong password.", 401)
        self.limiter.succeeded(address)
        token, _ = self.sessions.create()
        response = redirect("/", 303)
        self._cookie(response, COOKIE, token, int(self.cfg.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    def logout(self) -> Response:
        self.sessions.drop(request.cookies.get(COOKIE))
        response = json_response({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    def static_file(self, name: str) -> Response:
        if name not in {"app.js", "login.js", "style.css"}:
            return text("404 Not Found", 404)
        response = send_from_directory(STATIC, name, max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    # ----------------------------------------------------------------- API

    def _printer(self, name: str) -> Any:
        return next((p for p in self.backend.config.printers if p.name == name), None)

    def state(self) -> Response:
        status = self.backend.status()
        printers = []
        roi = list(self.backend.bundle.meta.preprocess.roi)
        for p in self.backend.config.printers:
            st = status.get("printers", {}).get(p.name, {})
            det = p.detection
            saved, refused = overrides.saved_and_refusal(
                self.storage_dir, p.name, det, overrides.mask_check(self.backend.bundle.meta)
            )
            if refused:
                saved = {"error": refused}
            printers.append(
                {
                    **st,
                    "name": p.name,
                    "action": p.action,
                    "api": p.api.kind != "none",  # a print's end is known: it can be skipped
                    "needed": det.consecutive,
                    "settings": {
                        "mask": det.mask,
                        "region": det.region,
                        "sensitivity": det.sensitivity,
                        "consecutive": det.consecutive,
                        "judge_start": det.judge_start,
                    },
                    "model_region": roi,
                    # a region other than the model's turns it off (the page says so)
                    "model_guard": self.backend.bundle.meta.adaptation.guard > 0,
                    "saved": saved,
                    "yaml": overrides.yaml_snippet(p.name, saved) if "error" not in saved else "",
                }
            )
        return json_response(
            {
                "now": time.time(),
                "boot": self.boot,
                "mqtt_connected": status.get("mqtt_connected"),
                "mqtt_enabled": self.backend.config.mqtt.enabled,
                # each print judged against its own start (else each frame on its own)
                "per_print": self.backend.bundle.meta.adaptation.enabled,
                "reload_refused": status.get("reload_refused"),
                "waiting_for_restart": status.get("waiting_for_restart") or [],
                # phone notifications whose last try failed: only /status said so
                "notify_failing": [
                    {"target": name, "waiting": s["pending"], "error": s["last_error"]}
                    for name, s in (status.get("notify") or {}).items()
                    if s.get("failing")
                ],
                "login": self.login_required,
                "printers": printers,
            }
        )

    def timeline(self, name: str) -> Response:
        history = self.backend.histories.get(name)
        if history is None:
            return text("404 no such printer", 404)
        try:
            after = int(request.args.get("after", "0"))
            clock = int(request.args.get("clock", "0"))
        except ValueError:
            return text("400 after and clock must be whole numbers (from the last answer)", 400)
        return json_response(history.timeline.since(after, clock))

    def frame(self, name: str) -> Response:
        history = self.backend.histories.get(name)
        if history is None:
            return text("404 no such printer", 404)
        jpeg = history.latest_frame_jpeg()
        # An idle printer's camera is not read: one frame is taken for the page where there is
        # none, and for the mask editor (``fresh``) where the latest is not of now: masks drawn
        # on the last print's picture would land where the camera no longer looks.
        fresh = request.args.get("fresh") == "1"
        if not jpeg or fresh:
            looked = self.backend.dispatch(Command(name, Verb.LOOK, source="web"))
            if fresh and not looked.ok:  # a camera busy or offline: try again later
                return text(f"503 no frame of now: {looked.detail}", 503)
            jpeg = history.latest_frame_jpeg()
        if not jpeg:
            return text("404 no frame yet for this printer", 404)
        return Response(jpeg, 200, mimetype="image/jpeg")

    def incidents(self) -> Response:
        names = [p.name for p in self.backend.config.printers]
        # a printer renamed or removed in the config: its alerts shown, no button (no watcher
        # of that name would carry one out)
        earlier = [n for n in printers_on_disk(self.storage_dir) if n not in names]
        found = list_incidents(self.storage_dir, [*names, *earlier], limit=50)
        # an MQTT alert waits in the outbox until the broker has it; so does its correction
        # (the pause found done or not since), under an entry of its own
        waiting = {str(e.body.get("incident")) for e in self.outbox.pending(MQTT)}
        return json_response(
            [
                {
                    **shown(i.alert),
                    "printer": i.printer,
                    "incident": i.id,
                    "delivered": i.delivered and i.id not in waiting,
                    "lead_up": list(i.lead_up),
                    # answered (resumed or cancelled through the watchdog or at the printer):
                    # its printer buttons would only refuse, so none is offered
                    "answers": []
                    if closing_answer(i.alert)
                    else [v.value for v in saved_answers(i.alert)],
                    "answered": closing_answer(i.alert),
                    "earlier_printer": i.printer in earlier,
                }
                for i in found
            ]
        )

    def incident_file(self, printer: str, incident: str, file: str) -> Response:
        allowed = file in _INCIDENT_FILES or (
            file.startswith(f"{LEAD_UP}/")
            and file.count("/") == 1
            and SAFE_NAME.fullmatch(file.split("/")[1].removesuffix(".jpg")) is not None
            and file.endswith(".jpg")
        )
        # any printer's, one no longer in the config included: its pictures are on disk
        if not (allowed and SAFE_NAME.fullmatch(printer) and SAFE_NAME.fullmatch(incident)):
            return text("404 Not Found", 404)
        root = incidents_root(self.storage_dir)
        folder = root / printer / incident
        path = folder / file
        # a link put there by something else is not followed: it could name any file
        if not _own_file(path, root):
            return text("404 Not Found", 404)
        response = send_from_directory(folder, file, mimetype="image/jpeg", max_age=0)
        response.headers["Cache-Control"] = "private, no-cache"
        return response

    def command(self) -> Response:
        body = _json_body()
        if not isinstance(body, dict):
            return json_response({"ok": False, "detail": "expected a JSON object"}, 400)
        printer, verb, incident = body.get("printer"), body.get("verb"), body.get("incident")
        try:
            verb = Verb(verb)
        except ValueError:
            return json_response({"ok": False, "detail": f"unknown verb {verb!r}"}, 400)
        if not isinstance(printer, str) or self._printer(printer) is None:
            return json_response({"ok": False, "detail": "unknown printer"}, 404)
        if incident is not None and (
            not isinstance(incident, str) or not SAFE_NAME.fullmatch(incident)
        ):
            return json_response({"ok": False, "detail": "bad incident id"}, 400)
        result = self.backend.dispatch(Command(printer, verb, incident, source="web"))
        status = 200 if result.ok else 202 if result.under_way else 409
        return json_response({"ok": result.ok, "detail": result.detail}, status)

    def settings(self, name: str) -> Response:
        if self._printer(name) is None:
            return json_response({"ok": False, "detail": "unknown printer"}, 404)
        body = _json_body()
        was = body.pop("was", {}) if isinstance(body, dict) else {}
        if not isinstance(body, dict) or not body:
            return json_response({"ok": False, "detail": "expected a JSON object of settings"}, 400)
        if not isinstance(was, dict) or set(was) - set(DRAWN):
            return json_response(
                {"ok": False, "detail": f"'was' holds the {' or '.join(DRAWN)} the page drew on"},
                400,
            )
        if wrong := _not_of_its_type(name, body):
            return json_response({"ok": False, "detail": wrong}, 400)
        try:
            saved, applied = self.backend.save_settings(name, body, was)
        except overrides.ChangedElsewhere as exc:
            return json_response(
                {
                    "ok": False,
                    "stale": True,
                    "detail": f"not saved: the {exc.key} was changed elsewhere (another tab, a "
                    "phone, a reset) since this page showed it; the page shows it now: draw "
                    "again and save",
                },
                409,
            )
        except ConfigError as exc:
            return json_response({"ok": False, "detail": str(exc)}, 400)
        except OSError as exc:
            return json_response({"ok": False, "detail": _not_saved(exc)}, 500)
        return json_response(
            {
                "ok": applied.done is not False,
                "saved": saved,
                "yaml": overrides.yaml_snippet(name, saved),
                "detail": _what_became(applied, "saved"),
            }
        )

    def reset(self, name: str) -> Response:
        if self._printer(name) is None:
            return json_response({"ok": False, "detail": "unknown printer"}, 404)
        try:
            done, applied = self.backend.reset_settings(name)
        except ConfigError as exc:
            return json_response({"ok": False, "detail": f"nothing changed: {exc}"}, 400)
        except OSError as exc:
            return json_response({"ok": False, "detail": _not_saved(exc)}, 500)
        return json_response(
            {"ok": applied.done is not False, "detail": _what_became(applied, done)}
        )


def _what_became(applied: Applied, done: str) -> str:
    """A saved change and its reload, in one line (refused: the owner must fix the file)."""
    if applied.done is None:
        return f"{done}; {applied.why}"
    if applied.done:
        return f"{done} and applied"
    if applied.left_out:
        return f"{done}, but not applied: {applied.why}"
    return f"{done}, but not applied: the watchdog keeps its running settings ({applied.why})"


def _own_file(path: Path, root: Path) -> bool:
    """``path`` is a plain file under ``root`` with no link on the way from it."""
    try:
        inside = path.relative_to(root)
        steps = [root.joinpath(*inside.parts[: i + 1]) for i in range(len(inside.parts))]
        return not any(p.is_symlink() for p in steps) and path.is_file()
    except (OSError, ValueError):
        return False


def _json_body() -> Any:
    """The request's JSON, or None when it is not JSON (nested too deep included: the parser
    raises RecursionError there, which Flask's silent parse does not catch)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _not_saved(exc: OSError) -> str:
    """A disk error while saving settings, in one line naming the file."""
    return (
        f"cannot save the settings in {exc.filename or 'the storage folder'}: {exc.strerror or exc}"
    )


# the latest heatmap of a printer, which a scrape token opens as it opens /status
SCRAPED_PICTURE = re.compile(r"/printers/[A-Za-z0-9_-]{1,64}/latest\.jpg")

# the settings drawn on the page whole (a save replaces them): saved only over what it drew on
DRAWN = ("mask", "region")
# what the page sends for each setting: JSON's own types. The config's schema reads YAML,
# whose "no" and "1.2" it takes as a boolean and a number; sent as JSON they are a mistake
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "sensitivity": ((int, float), "a number"),
    "consecutive": ((int,), "a whole number"),
    "judge_start": ((bool,), "true or false"),
    "region": ((list, type(None)), "a list of four numbers, or null"),
    "mask": ((list,), "a list of polygons"),
}


def _not_of_its_type(name: str, body: dict[str, Any]) -> str:
    """Why a setting sent is not of the JSON type the page sends ("": each is)."""
    for key, (kinds, said) in _JSON_TYPES.items():
        value = body.get(key)
        if key in body and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            shown = json.dumps(value)[:40]
            return f"printers.{name}.detection.{key}: expected {said}, got {shown}; nothing saved"
    return ""


# the dashboard's data and pictures, and the status server's heatmaps
OWN_PAGES_ONLY = ("/api/", "/printers/")


def _embedded_by_another_site() -> bool:
    """A page of another site (or another port of this host) loads the dashboard's data or
    pictures (an ``<img>``, a script's fetch): refused before it costs a camera read. The
    browser says so (Fetch Metadata); a link followed to the dashboard is a navigation, let
    through, and a client that sends no such header (curl, Home Assistant) is not a page."""
    site = request.headers.get("Sec-Fetch-Site")
    return (
        site in ("cross-site", "same-site") and request.headers.get("Sec-Fetch-Mode") != "navigate"
    )


def _own_pages_only(response: Response) -> Response:
    """The dashboard's data and pictures are for its own pages: a browser that sent no Fetch
    Metadata still keeps another site from using them, and keeps none of them where the next
    person at the browser could see them after a logout (an incident's picture, which never
    changes, is asked for again and answered "not modified" while logged in)."""
    if request.path.startswith(OWN_PAGES_ONLY):
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def _same_site(origin: str, host: str) -> bool:
    """The browser's ``Origin`` names this server (host and port; any scheme: behind a TLS
    reverse proxy the page is https while the daemon itself speaks plain HTTP)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = {"http": 80, "https": 443}[parts.scheme]
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    netloc = name if port in (None, default) else f"{name}:{port}"
    own = {host.lower()}  # a Host header may carry the default port, or not
    own |= {h.removesuffix(p) for h in own for p in (":80", ":443") if h.endswith(p)}
    return netloc.lower() in own
