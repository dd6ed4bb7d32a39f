"""The dashboard's guards and saved settings, against `python -m watchdog run` as a process.

The daemon watches the bundled demo frames (a folder camera, no printer API) with the shipped
model, so no training and no server is needed: what is tested here is who may see and press
what (login, sessions, CSRF, Host, rate limit, the refusal to listen beyond loopback without
a password) and the settings the page saves (validated like the YAML, shown by check-config,
reset). The browser tests are in test_web_browser.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
import yaml

from tests.daemon_helpers import DaemonProcess, free_port, run_cli, wait_until, write_config
from watchdog.web.auth import LoginLimiter, Sessions

DEMO_FRAMES = Path(__file__).resolve().parents[1] / "watchdog" / "demo" / "frames"
MODEL = Path(__file__).resolve().parents[1] / "watchdog" / "models" / "default"
PASSWORD = "correct horse battery staple"
SCRAPE_TOKEN = "prometheus-7f3a9c2e41d8b605"
PRINTER = "ender3"
PROTECTED = [
    "/",
    "/status",
    "/metrics",
    "/api/state",
    "/api/incidents",
    f"/api/printers/{PRINTER}/timeline",
    f"/api/printers/{PRINTER}/frame.jpg",
    f"/printers/{PRINTER}/latest.jpg",
    "/static/app.js",
]


def _config(
    tmp_path: Path,
    listen: str,
    api: dict[str, object] | None = None,
    camera: dict[str, object] | None = None,
    **http: object,
) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        model=str(MODEL),
        http={"listen": listen, **http},
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {
                "name": PRINTER,
                "camera": camera or {"source": str(DEMO_FRAMES), "interval_s": 0.5},
                "api": api or {"kind": "none"},
            }
        ],
    )


def _start(config: Path, log: Path, port: int, host: str = "127.0.0.1") -> DaemonProcess:
    daemon = DaemonProcess(config, log)
    daemon.wait_up(f"http://{host}:{port}")
    return daemon


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DaemonProcess, Path]]:
    """A daemon on 0.0.0.0 (all addresses) with a password from a file; URLs use 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("web-guarded")
    secret = tmp / "dashboard.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    token = tmp / "scrape.token"
    token.write_text(SCRAPE_TOKEN + "\n")
    token.chmod(0o600)
    port = free_port()
    config = _config(
        tmp,
        f"0.0.0.0:{port}",
        password_file=str(secret),
        login_attempts_per_minute=3,
        scrape_token_file=str(token),
        host_names=["pi.example.org", "drücker.lan"],
    )
    daemon = _start(config, tmp / "daemon.log", port)
    yield f"http://127.0.0.1:{port}", daemon, tmp
    daemon.stop()


@pytest.fixture(scope="module")
def open_daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, DaemonProcess, Path]]:
    """A daemon on loopback without a password (the default)."""
    tmp = tmp_path_factory.mktemp("web-open")
    port = free_port()
    daemon = _start(_config(tmp, f"127.0.0.1:{port}"), tmp / "daemon.log", port)
    yield f"http://127.0.0.1:{port}", daemon, tmp
    daemon.stop()


def _csrf(page: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def _login(
    url: str, password: str = PASSWORD, headers: dict[str, str] | None = None
) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    form = s.get(f"{url}/login", headers=headers, timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = s.post(
        f"{url}/login",
        data={"csrf": token, "password": password},
        headers=headers,
        # as a browser sends them to the proxy over HTTPS (a Secure cookie too)
        cookies=dict(form.cookies),
        timeout=10,
        allow_redirects=False,
    )
    return s, r


# --------------------------------------------------------------------------- beyond loopback


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8787", "192.168.1.20:8787", "[::]:8787", "octopi.local:8787"]
)
def test_daemon_refuses_to_listen_beyond_loopback_without_a_password(
    tmp_path: Path, listen: str
) -> None:
    config = _config(tmp_path, listen)
    proc = run_cli("run", "--config", str(config), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "http.listen" in lines[0] and "password" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert run_cli("check-config", "--config", str(config)).returncode == 2


def test_every_page_needs_the_login_but_healthz(guarded) -> None:
    url, daemon, _ = guarded
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    for path in PROTECTED:
        r = requests.get(url + path, timeout=10, allow_redirects=False)
        if path == "/":
            assert r.status_code == 303 and r.headers["Location"].endswith("/login")
        else:
            assert r.status_code == 401, path
        assert b"ender3" not in r.content or path == "/", path  # nothing of the printer leaks
        assert r.headers.get("Content-Type", "").split(";")[0] != "image/jpeg", path
    for path in (
        "/api/command",
        f"/api/printers/{PRINTER}/settings",
        f"/api/printers/{PRINTER}/settings/reset",
    ):
        assert (
            requests.post(
                url + path, json={"printer": PRINTER, "verb": "disable"}, timeout=10
            ).status_code
            == 401
        )


def test_a_scrape_token_opens_status_and_metrics_and_nothing_else(guarded) -> None:
    """Behind a password, /status and /metrics needed the page's login, which Prometheus and
    Home Assistant's REST sensor cannot do. ``http.scrape_token`` as a bearer opens them (and a
    printer's latest heatmap) to GET, and nothing else: not the dashboard's data, not a
    command; a wrong token, or the right one in the URL, opens nothing."""
    url, daemon, _ = guarded
    bearer = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    metrics = requests.get(f"{url}/metrics", headers=bearer, timeout=10)
    assert metrics.status_code == 200 and "printer_watchdog_frames_total" in metrics.text
    status = requests.get(f"{url}/status", headers=bearer, timeout=10)
    assert status.status_code == 200 and PRINTER in status.json()["printers"]
    wait_until(
        "a heatmap",
        lambda: (
            requests.get(
                f"{url}/printers/{PRINTER}/latest.jpg", headers=bearer, timeout=10
            ).status_code
            == 200
        ),
        60,
    )
    for path in ("/", "/api/state", f"/api/printers/{PRINTER}/frame.jpg", "/api/incidents"):
        r = requests.get(url + path, headers=bearer, timeout=10, allow_redirects=False)
        assert r.status_code in (303, 401), (path, r.status_code)
    command = requests.post(
        f"{url}/api/command",
        json={"printer": PRINTER, "verb": "disable"},
        headers=bearer,
        timeout=10,
    )
    assert command.status_code == 401
    wrong = {"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}x"}
    assert requests.get(f"{url}/metrics", headers=wrong, timeout=10).status_code == 401
    assert requests.get(f"{url}/metrics?token={SCRAPE_TOKEN}", timeout=10).status_code == 401
    assert SCRAPE_TOKEN not in daemon.log


def test_a_scrape_token_anyone_could_guess_is_refused(tmp_path) -> None:
    config = _config(tmp_path, "127.0.0.1:8787", scrape_token="k3y9q")
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 2 and "http.scrape_token" in r.stderr and "16" in r.stderr, r.stderr
    assert "k3y9q" not in r.stderr


def test_login_gives_a_session_cookie_that_opens_the_pages(guarded) -> None:
    url, daemon, _ = guarded
    s, r = _login(url)
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = s.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and "Printer watchdog" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    wait_until(
        "a scored frame",
        lambda: s.get(f"{url}/api/state", timeout=10).json()["printers"][0]["score"] is not None,
        60,
    )
    for path in PROTECTED:
        assert s.get(url + path, timeout=10).status_code == 200, path
    assert PASSWORD not in daemon.log


def test_the_owner_logs_in_from_a_real_browser(guarded) -> None:
    """The login form typed into and sent by Chromium, as the owner does. Under the
    "no-referrer" policy every page carried, a browser sends a form post with "Origin: null":
    the right password was refused as a cross-site request, and nobody could log in."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, chromium_missing

    if why := chromium_missing():
        pytest.skip(why)
    url, daemon, _ = guarded
    browser = chromium()
    try:
        browser.get(f"{url}/")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login-button").click()
        wait_until(
            "the dashboard after the login",
            lambda: browser.find_elements(By.CSS_SELECTOR, "[data-printer]"),
            30,
            lambda: browser.page_source[:2000] + daemon.log,
        )
        assert browser.current_url.rstrip("/") == url

        # The owner's view is kept across a login: an editor opened from a bookmark, and one
        # whose login ran out while it was open, came back as the overview.
        def log_in(password: str = PASSWORD) -> None:
            wait_until("the login form", lambda: browser.find_elements(By.ID, "password"), 30)
            browser.find_element(By.ID, "password").send_keys(password)
            browser.find_element(By.ID, "login-button").click()

        def in_editor() -> bool:
            return bool(
                browser.execute_script(
                    f"return typeof S !== 'undefined' && S.view === 'edit'"
                    f" && location.hash === '#/edit/{PRINTER}'"
                    " && !document.getElementById('view-edit').hidden"
                )
            )

        browser.delete_all_cookies()
        browser.get(f"{url}/#/edit/{PRINTER}")
        log_in("wrong")
        wait_until("refused", lambda: browser.find_elements(By.ID, "login-error"), 30)
        # said to a screen reader too, and tied to the field
        assert browser.find_element(By.ID, "login-error").get_attribute("role") == "alert"
        field = browser.find_element(By.ID, "password")
        assert field.get_attribute("aria-invalid") == "true"
        assert not browser.find_element(By.ID, "login-expired").is_displayed()
        log_in()
        wait_until("the editor after the login", in_editor, 30, lambda: browser.current_url)
        browser.delete_all_cookies()  # the login runs out with the editor open
        wait_until("the login page", lambda: "/login" in browser.current_url, 30)
        # why the page changed: a login page appeared with no word of it
        wait_until(
            "said why", lambda: browser.find_element(By.ID, "login-expired").is_displayed(), 10
        )
        log_in()
        wait_until("the editor again", in_editor, 30, lambda: browser.current_url)
    finally:
        browser.quit()
        shutil.rmtree(browser._profile, ignore_errors=True)


def test_a_login_through_a_tls_reverse_proxy_works_and_other_sites_are_still_refused(
    guarded,
) -> None:
    """Behind a TLS reverse proxy (the way docs/dashboard.md says to cross an untrusted
    network) the browser's Origin is https://<name> while the daemon speaks plain HTTP; the
    proxy passes the Host on, a name in ``http.host_names``. The login and the buttons work;
    another site, or another port, is refused."""
    url, _, _ = guarded

    def login(origin: str) -> int:
        s = requests.Session()
        proxied = {"Host": "pi.example.org"}
        form = s.get(f"{url}/login", headers=proxied, timeout=10)
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        r = s.post(
            f"{url}/login",
            data={"csrf": token, "password": PASSWORD},
            headers={**proxied, "Origin": origin},
            timeout=10,
            allow_redirects=False,
        )
        return r.status_code

    from watchdog.web.app import _same_site

    assert _same_site("http://[::1]:8787", "[::1]:8787")  # the page opened on IPv6 loopback
    assert not _same_site("http://[::2]:8787", "[::1]:8787")
    assert login("https://pi.example.org") == 303
    assert login("https://pi.example.org:8443") == 403
    assert login("https://evil.example") == 403
    assert login("null") == 403


def test_posts_need_the_csrf_token(guarded) -> None:
    url, _, _ = guarded
    s, _ = _login(url)
    token = _csrf(s.get(f"{url}/", timeout=10).text)
    body = {"printer": PRINTER, "verb": "disable"}
    # a request sent without the token is told so: "this page is out of date" sent a script
    # author to reload a page they never had
    none = s.post(f"{url}/api/command", json=body, timeout=10)
    assert (none.status_code, none.text.strip()) == (
        403,
        "403 no page token (X-CSRF-Token): send it as the page does",
    )
    forged = s.post(f"{url}/api/command", json=body, headers={"X-CSRF-Token": "forged"}, timeout=10)
    assert forged.status_code == 403 and "out of date" in forged.text, forged.text
    other, _ = _login(url)  # another session's token is not this one's
    other_token = _csrf(other.get(f"{url}/", timeout=10).text)
    assert (
        s.post(
            f"{url}/api/command", json=body, headers={"X-CSRF-Token": other_token}, timeout=10
        ).status_code
        == 403
    )
    assert s.get(f"{url}/status", timeout=10).json()["printers"][PRINTER]["state"] != "disabled"
    r = s.post(f"{url}/api/command", json=body, headers={"X-CSRF-Token": token}, timeout=10)
    assert r.status_code == 200 and r.json()["ok"], r.text
    wait_until(
        "the watcher disabled",
        lambda: (
            s.get(f"{url}/status", timeout=10).json()["printers"][PRINTER]["state"] == "disabled"
        ),
        10,
    )
    r = s.post(
        f"{url}/api/command",
        json={"printer": PRINTER, "verb": "enable"},
        headers={"X-CSRF-Token": token},
        timeout=10,
    )
    assert r.json()["ok"]
    # A login form posted without its token (a cross-site login) is refused too, and logs
    # nobody in; a form that expired is shown again with a new token, saying so (it answered
    # in plain text that the watchdog had restarted).
    stale = requests.post(f"{url}/login", data={"password": PASSWORD}, timeout=10)
    assert stale.status_code == 403 and "watchdog_session" not in stale.cookies
    assert "The form expired" in stale.text and 'name="csrf"' in stale.text, stale.text


def test_logout_ends_the_session_and_leaves_no_picture_in_the_browser(guarded) -> None:
    """An incident's pictures were kept an hour in the browser's cache: the next person at a
    shared computer saw them after the owner logged out. The browser must ask again each time;
    while logged in the answer is "not modified" (no second download)."""
    from watchdog.incidents import IncidentStore

    url, _, tmp = guarded
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    incident = IncidentStore(tmp / "state").save(PRINTER, {"score": 9.0}, jpeg, jpeg, pending=False)
    s, _ = _login(url)
    token = _csrf(s.get(f"{url}/", timeout=10).text)
    picture = f"{url}/api/incidents/{PRINTER}/{incident.id}/frame.jpg"
    first = s.get(picture, timeout=10)
    assert first.status_code == 200 and first.content == jpeg
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = s.get(picture, headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
    assert again.status_code == 304
    for live in (f"{url}/api/state", f"{url}/api/printers/{PRINTER}/frame.jpg"):
        assert "no-store" in s.get(live, timeout=30).headers["Cache-Control"], live
    cookie = s.cookies.get("watchdog_session")
    assert s.post(f"{url}/logout", headers={"X-CSRF-Token": token}, timeout=10).status_code == 200
    stale = requests.get(f"{url}/api/state", cookies={"watchdog_session": cookie}, timeout=10)
    assert stale.status_code == 401
    asked = requests.get(
        picture,
        cookies={"watchdog_session": cookie},
        headers={"If-None-Match": first.headers["ETag"]},
        timeout=10,
    )
    assert asked.status_code == 401 and asked.content != jpeg


def test_with_a_password_a_name_not_its_own_is_refused_before_a_login_attempt_counts(
    guarded,
) -> None:
    """A web site the owner visits can rebind its name to the dashboard's address: its script
    then reads the login form and posts guesses as a page of that name, from the owner's
    browser, spending the owner's login attempts (and guessing 5 a minute while the tab is
    open). Where a password guards the page, a Host that is no address and none of this
    server's names is refused before anything is counted."""
    url, _, _ = guarded
    port = url.rsplit(":", 1)[1]
    own = f"http://127.0.0.2:{port}"  # a client of its own: other tests spend 127.0.0.1's limit
    rebound = {"Host": f"evil.example:{port}"}
    refused = requests.get(f"{own}/login", headers=rebound, timeout=10)
    assert refused.status_code == 403 and "http.host_names" in refused.text, refused.text
    assert "csrf" not in refused.text
    form = requests.get(f"{own}/login", timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    for _ in range(4):  # over the limit of 3 a minute
        guess = requests.post(
            f"{own}/login",
            data={"csrf": token, "password": "wrong"},
            cookies=dict(form.cookies),
            headers={**rebound, "Origin": f"http://evil.example:{port}"},
            timeout=10,
            allow_redirects=False,
        )
        assert guess.status_code == 403, guess.text
    assert _login(own)[1].status_code == 303  # the owner's attempts are all there
    machine = socket.gethostname()
    for name in (
        machine,
        f"{machine.split('.')[0]}.local",
        "PI.example.org.",
        "xn--drcker-4ya.lan",  # drücker.lan, as a browser sends it
        "[::1]",
        "192.0.2.7",
    ):
        answered = requests.get(f"{own}/login", headers={"Host": f"{name}:{port}"}, timeout=10)
        assert answered.status_code == 200, (name, answered.text)
    odd = requests.get(f"{own}/login", headers={"Host": "my_printer.lan"}, timeout=10)
    assert odd.status_code == 403 and "no valid host name" in odd.text, odd.text
    assert requests.get(f"{own}/status", headers=rebound, timeout=10).status_code == 403
    scraped = {**rebound, "Authorization": f"Bearer {SCRAPE_TOKEN}"}
    assert requests.get(f"{own}/status", headers=scraped, timeout=10).status_code == 200


def test_a_phone_buttons_host_is_one_of_the_names_the_guarded_page_answers_to(
    monkeypatch,
) -> None:
    """The phone's buttons open the page's address too (an incident's link): the host of
    ``actions_url`` answers without being listed again, in the form a browser sends it. A
    machine whose name is given in full answers to its short name too (a search domain fills
    in the rest when the owner types it)."""
    from watchdog.config import parse_config
    from watchdog.web import app
    from watchdog.web.app import own_names

    config = parse_config(
        {
            "printers": [{"name": PRINTER}],
            "http": {"listen": "0.0.0.0:8787", "generate_password": True, "host_names": ["a.lan"]},
            "notify": [{"url": "ntfy://127.0.0.1/t", "actions_url": "http://Drücker.lan:8787"}],
        }
    )
    names = own_names(config.http, config)
    machine = socket.gethostname().lower()
    assert {"a.lan", "xn--drcker-4ya.lan", "localhost", machine} <= names, names
    monkeypatch.setattr(app.socket, "gethostname", lambda: "Pi.Home.Lan")
    assert {"pi.home.lan", "pi", "pi.local"} <= own_names(config.http, config)


def test_failed_logins_are_rate_limited(guarded) -> None:
    url, daemon, _ = guarded
    codes = [_login(url, "wrong")[1].status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    s, r = _login(url)  # the right password, but too many failures from this address
    assert r.status_code == 429 and "watchdog_session" not in s.cookies
    # naming another client is believed from a trusted proxy only (http.trusted_proxies)
    assert _login(url, headers={"X-Forwarded-For": "198.51.100.7"})[1].status_code == 429
    # the owner can see that someone tries (one line a minute), never what they typed
    said = "dashboard: a login refused (not the password), from 127.0.0.1"
    wait_until("the refusal logged", lambda: said in daemon.log, 10)
    assert "wrong" not in daemon.log


def test_behind_a_trusted_proxy_each_client_has_its_own_login_limit_and_a_secure_cookie(
    tmp_path: Path,
) -> None:
    """Behind a reverse proxy every request comes from the proxy: a stranger's wrong guesses
    kept the owner out too, and the login cookie was never Secure though the browser spoke
    HTTPS. With the proxy's address in ``http.trusted_proxies`` the client and the scheme
    are the proxy's word (X-Forwarded-For read from its right end, X-Forwarded-Proto)."""
    secret = tmp_path / "dashboard.password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    port = free_port()
    config = _config(
        tmp_path,
        f"127.0.0.1:{port}",
        password_file=str(secret),
        login_attempts_per_minute=2,
        trusted_proxies=["127.0.0.0/8"],
    )
    daemon = _start(config, tmp_path / "daemon.log", port)
    url = f"http://127.0.0.1:{port}"
    try:
        stranger = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
        codes = [_login(url, "wrong", stranger)[1].status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        # the stranger writing another address at the left: the proxy appended the real one
        spoofed = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5"}
        assert _login(url, "wrong", spoofed)[1].status_code == 429
        owner = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
        s, r = _login(url, headers=owner)
        assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]
        plain = _login(url, headers={"X-Forwarded-For": "198.51.100.8"})[1]
        assert plain.status_code == 303 and "Secure" not in plain.headers["Set-Cookie"]
        # one stranger hammering takes nothing from the others: only the tries its own limit
        # lets through count towards the proxy's
        for _ in range(30):
            assert _login(url, "wrong", stranger)[1].status_code == 429
        assert _login(url, headers={"X-Forwarded-For": "198.51.100.9"})[1].status_code == 303
        # a proxy routes by name itself: the name it passes on need not be listed
        named = {"X-Forwarded-For": "198.51.100.10", "Host": "watchdog.example.org"}
        assert _login(url, headers=named)[1].status_code == 303
        # a host inside a trusted network writing a new client at each try: the proxy's
        # clients together get ten times one client's limit (6 let through so far)
        fresh = [
            _login(url, "wrong", {"X-Forwarded-For": f"198.51.100.{100 + i}"})[1].status_code
            for i in range(16)
        ]
        assert fresh == [401] * 14 + [429] * 2, fresh
    finally:
        daemon.stop()
    from watchdog.web.auth import Proxies

    proxies = Proxies(["10.0.0.0/8", "::1"])
    assert proxies.client("10.1.2.3", "198.51.100.7, 10.9.9.9") == "198.51.100.7"
    assert proxies.client("::ffff:10.1.2.3", "2001:db8::1") == "2001:db8::1"
    assert proxies.client("10.1.2.3", "not an address") == "10.1.2.3"  # the proxy's, shared
    assert proxies.client("192.0.2.1", "198.51.100.7") == "192.0.2.1"  # not a proxy: ignored
    assert not proxies.https("192.0.2.1", "https") and proxies.https("::1", "http, https")


def test_sessions_expire_and_limiter_forgets_after_a_minute(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("watchdog.web.auth.time.time", lambda: now[0])
    monkeypatch.setattr("watchdog.web.auth.time.monotonic", lambda: now[0])
    sessions = Sessions(lifetime_s=3600)
    token, _ = sessions.create()
    assert sessions.get(token) is not None
    now[0] += 3601
    assert sessions.get(token) is None
    limiter = LoginLimiter(2)
    assert limiter.attempt("10.0.0.9") and limiter.attempt("10.0.0.9")
    assert not limiter.attempt("10.0.0.9") and limiter.attempt("10.0.0.8")
    now[0] += 61
    assert limiter.attempt("10.0.0.9")
    limiter.succeeded("10.0.0.9")  # the right password: its count starts again
    assert limiter.attempt("10.0.0.9") and limiter.attempt("10.0.0.9")


def test_a_login_outlives_a_clock_set_forward_and_not_one_set_back(monkeypatch) -> None:
    """A Pi's clock set by NTP after its boot (days ahead) ended every login at once; one set
    back stretched them. Sessions live in memory: their time is the monotonic clock's."""
    wall, steady = [1_800_000_000.0], [1000.0]
    monkeypatch.setattr("watchdog.web.auth.time.time", lambda: wall[0])
    monkeypatch.setattr("watchdog.web.auth.time.monotonic", lambda: steady[0])
    sessions = Sessions(lifetime_s=3600)
    token, _ = sessions.create()
    wall[0] += 3 * 86400
    assert sessions.get(token) is not None
    wall[0] -= 30 * 86400  # and set back: the hour still ends when it ends
    steady[0] += 3601
    assert sessions.get(token) is None


def test_a_spray_of_addresses_neither_grows_the_limiter_nor_buys_more_attempts(
    monkeypatch,
) -> None:
    """Beyond loopback: one home IPv6 network has a whole /64, and a bot has many addresses.
    Each new address must not add memory for ever, a network its own allowance per address,
    nor a full table keep the owner out."""
    now = [1000.0]
    monkeypatch.setattr("watchdog.web.auth.time.monotonic", lambda: now[0])
    limiter = LoginLimiter(3, max_clients=100)
    for i in range(30_000):  # one try a second, each from a new IPv4 address
        now[0] += 1
        limiter.attempt(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter._attempts) <= 100
    # one /64: three tries in all, whichever addresses they come from
    tries = [limiter.attempt(f"2001:db8:1:2::{i:x}") for i in range(1, 6)]
    assert tries == [True, True, True, False, False]
    assert limiter.attempt("2001:db8:1:3::1")  # the next network counts on its own
    # a table full of sprayed clients never locks the owner out: the stalest is forgotten
    busy = LoginLimiter(3, max_clients=2)
    assert busy.attempt("10.1.1.1") and busy.attempt("10.1.1.2")
    assert busy.attempt("192.168.1.20")  # the owner
    assert list(busy._attempts) == ["10.1.1.2", "192.168.1.20"]


def test_generated_password_is_never_printed_only_written_for_its_owner(tmp_path: Path) -> None:
    """Under systemd the output is kept in the journal, which others may read: the generated
    password goes to a file only the service's user can read, and the output says where."""
    port = free_port()
    config = _config(tmp_path, f"0.0.0.0:{port}", generate_password=True)
    daemon = _start(config, tmp_path / "first.log", port)
    first = tmp_path / "state" / "web" / "first-password"
    try:
        wait_until("the password line", lambda: "dashboard password" in daemon.log, 10)
        password = first.read_text().strip()
        assert len(password) >= 16 and password not in daemon.log and str(first) in daemon.log
        _, r = _login(f"http://127.0.0.1:{port}", password)
        assert r.status_code == 303
    finally:
        assert daemon.stop() == 0
    stored = (tmp_path / "state" / "web" / "password").read_text()
    assert password not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    for path in (first, tmp_path / "state" / "web" / "password"):
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    first.unlink()  # read and deleted, as the owner is told
    again = _start(config, tmp_path / "second.log", port)
    try:
        assert "dashboard password" not in again.log and not first.exists()
        assert _login(f"http://127.0.0.1:{port}", password)[1].status_code == 303
    finally:
        again.stop()


def test_a_password_hash_cut_short_is_refused_at_once_not_at_every_login(tmp_path: Path) -> None:
    """A password hash whose '$' parts a shell or an environment file ate was taken as a
    hash all the same: the daemon started, and every login, the right password too, was
    "Wrong password." It is refused by ``check-config`` and at start, in one line naming the
    key, the value not shown; a stored generated password so damaged is named likewise."""
    from werkzeug.security import generate_password_hash

    from watchdog.config import HttpConfig
    from watchdog.errors import UsageError
    from watchdog.web.auth import GENERATED, password_hash

    whole = generate_password_hash("correct horse")
    cut = whole.split("$")[0] + "$" + whole.split("$")[1]
    config = _config(tmp_path, f"0.0.0.0:{free_port()}", password=cut)
    for command in ("check-config", "run"):
        r = run_cli(command, "--config", str(config), timeout=60)
        assert r.returncode == 2, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert "http.password" in line and "not a whole one" in line, r.stderr
        assert cut not in r.stderr and cut.split("$")[1] not in r.stderr
    stored = tmp_path / "state" / GENERATED
    stored.parent.mkdir(parents=True)
    stored.write_text(cut + "\n")
    with pytest.raises(UsageError, match="is damaged .*delete it for a new password"):
        password_hash(HttpConfig(listen="0.0.0.0:1", generate_password=True), tmp_path / "state")
    # a byte an SD card damaged (a traceback at every start), a FIFO (a start that hung)
    for at in (-3, whole.index("$", whole.index("$") + 1) - 2):  # in its digest, its salt
        data = bytearray(whole.encode() + b"\n")
        data[at] = 0xFF
        stored.write_bytes(bytes(data))
        with pytest.raises(UsageError, match="is damaged .*delete it for a new password"):
            password_hash(
                HttpConfig(listen="0.0.0.0:1", generate_password=True), tmp_path / "state"
            )
    stored.unlink()
    os.mkfifo(stored)
    with pytest.raises(UsageError, match="is damaged .not a regular file.: delete it"):
        password_hash(HttpConfig(listen="0.0.0.0:1", generate_password=True), tmp_path / "state")
    stored.unlink()
    stored.write_text(whole + "\n")
    assert (
        password_hash(HttpConfig(listen="0.0.0.0:1", generate_password=True), tmp_path / "state")
        == whole
    )


# --------------------------------------------------------------------------- loopback


def test_an_alert_whose_correction_waits_for_the_broker_is_not_said_delivered(open_daemon) -> None:
    """An alert delivered, then corrected (its pause found done, or not, after all) while the
    broker was away: its card said "MQTT: delivered", while Home Assistant still had the
    first word."""
    from watchdog.comms.outbox import MQTT, Outbox
    from watchdog.incidents import IncidentStore

    url, _, tmp = open_daemon
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    alert = {"printer": PRINTER, "action": "pause", "time": now}
    incident = IncidentStore(tmp / "state").save(PRINTER, alert, jpeg, jpeg, pending=False)
    assert "boot" in incident.alert  # its time's boot mark: the file's own, not the page's

    def delivered() -> bool:
        found = requests.get(f"{url}/api/incidents", timeout=10).json()
        shown = next(i for i in found if i["incident"] == incident.id)
        assert "boot" not in shown
        return bool(shown["delivered"])

    assert delivered()
    correction = Outbox(tmp / "state").put(MQTT, PRINTER, {**incident.alert, "answers": []})
    assert not delivered()
    Outbox(tmp / "state").done(correction)
    assert delivered()


def test_a_damaged_queued_alert_is_said_once_not_at_every_look_of_the_page(open_daemon) -> None:
    """A queued MQTT alert whose entry.json a power cut emptied: each look of the Incidents
    view (the page polls it every few seconds) logged the same error again, hundreds of lines
    an hour. It is said once, with what became of it, and kept aside, not deleted."""
    url, daemon, tmp = open_daemon
    folder = tmp / "state" / "outbox" / "mqtt" / "20261201T000000000Z-aaaaaa"
    folder.mkdir(parents=True)
    (folder / "entry.json").write_text("")
    for _ in range(4):
        assert requests.get(f"{url}/api/incidents", timeout=10).status_code == 200
    said = [ln for ln in daemon.log_path.read_text().splitlines() if folder.name in ln]
    assert len(said) == 1, said
    assert (
        "cannot be read (empty): not sent; kept as 20261201T000000000Z-aaaaaa.unreadable-"
        in (said[0])
    )
    [kept] = folder.parent.glob(f"{folder.name}.unreadable-*")
    assert (kept / "entry.json").exists() and not folder.exists()


def test_a_renamed_printers_alerts_stay_on_the_incidents_page_without_buttons(
    open_daemon,
) -> None:
    """A printer renamed (or removed) in the config: its alerts vanished from the page, though
    kept on disk. Listed, said to be of a printer no longer in the config, their pictures
    shown; a folder that is no printer's name is not."""
    from watchdog.incidents import IncidentStore

    url, _, tmp = open_daemon
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 70, np.uint8))[1].tobytes()
    alert = {"printer": "old-name", "action": "pause", "time": "2026-12-05T10:00:00+00:00"}
    incident = IncidentStore(tmp / "state").save("old-name", alert, jpeg, jpeg, pending=False)
    (tmp / "state" / "incidents" / "not a name").mkdir()
    found = requests.get(f"{url}/api/incidents", timeout=10).json()
    [earlier] = [i for i in found if i["incident"] == incident.id]
    assert earlier["printer"] == "old-name" and earlier["earlier_printer"] is True
    assert not any(i["earlier_printer"] for i in found if i["printer"] == PRINTER)
    picture = requests.get(f"{url}/api/incidents/old-name/{incident.id}/frame.jpg", timeout=10)
    assert picture.status_code == 200 and picture.content == jpeg
    nowhere = requests.get(f"{url}/api/incidents/nobody/{incident.id}/frame.jpg", timeout=10)
    assert nowhere.status_code == 404


def test_an_alerts_picture_that_is_a_link_elsewhere_is_not_served(open_daemon) -> None:
    """A link put in an alert's folder (by another program, a restored backup) was followed:
    the page served whatever file it named, a secret outside the storage folder included."""
    from watchdog.incidents import IncidentStore

    url, _, tmp = open_daemon
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 70, np.uint8))[1].tobytes()
    alert = {"printer": PRINTER, "action": "pause", "time": "2026-12-05T10:00:00+00:00"}
    incident = IncidentStore(tmp / "state").save(PRINTER, alert, jpeg, jpeg, pending=False)
    secret = tmp / "secret.txt"
    secret.write_text("SECRET-TOKEN")
    folder = tmp / "state" / "incidents" / PRINTER / incident.id
    (folder / "frame.jpg").unlink()
    (folder / "frame.jpg").symlink_to(secret)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "heatmap.jpg").write_bytes(b"SECRET-TOKEN")
    linked = folder.with_name("20261205T100000000Z-abcdef")
    linked.symlink_to(elsewhere)  # a whole folder linked elsewhere
    for picture in (f"{incident.id}/frame.jpg", f"{linked.name}/heatmap.jpg"):
        got = requests.get(f"{url}/api/incidents/{PRINTER}/{picture}", timeout=10)
        assert got.status_code == 404 and b"SECRET" not in got.content, picture
    shown = requests.get(f"{url}/api/incidents/{PRINTER}/{incident.id}/heatmap.jpg", timeout=10)
    assert shown.status_code == 200 and shown.content == jpeg


def test_loopback_page_is_open_but_posts_need_the_token_and_the_host(open_daemon) -> None:
    url, _, _ = open_daemon
    page = requests.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    # The shipped model learns each print's first 30 frames: the page shows that progress.
    state = wait_until(
        "a scored frame",
        lambda: (
            (p := requests.get(f"{url}/api/state", timeout=10).json()["printers"][0])["score"]
            is not None
            and p
        ),
        60,
    )
    assert state["state"] == "calibrating" and re.fullmatch(r"\d+/30", state["calibration"]), state
    token = _csrf(page.text)
    body = {"printer": PRINTER, "verb": "enable"}
    assert requests.post(f"{url}/api/command", json=body, timeout=10).status_code == 403
    ok = requests.post(f"{url}/api/command", json=body, headers={"X-CSRF-Token": token}, timeout=10)
    assert ok.status_code == 200
    # A web site the owner visits cannot drive the page: wrong Origin, or DNS rebinding (Host).
    evil = {"X-CSRF-Token": token, "Origin": "http://evil.example"}
    assert (
        requests.post(f"{url}/api/command", json=body, headers=evil, timeout=10).status_code == 403
    )
    assert (
        requests.get(f"{url}/api/state", headers={"Host": "evil.example"}, timeout=10).status_code
        == 403
    )
    assert (
        requests.get(f"{url}/healthz", headers={"Host": "evil.example"}, timeout=10).status_code
        == 200
    )


def test_another_site_cannot_embed_the_cameras_pictures_or_read_the_data(open_daemon) -> None:
    """Any web page the owner visits could load ``<img src="http://localhost:8787/api/printers
    /<p>/frame.jpg">`` (a camera read on an idle printer) and learn the printers' names. The
    browser says where a request comes from (Fetch Metadata): another site's, or another port's
    of this host, is refused; the page's own and a followed link are not."""
    url, _, _ = open_daemon
    frame = f"{url}/api/printers/{PRINTER}/frame.jpg"
    embedded = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    for site in ("cross-site", "same-site"):
        heatmap = f"{url}/printers/{PRINTER}/latest.jpg"
        for path in (frame, heatmap, f"{url}/api/state", f"{url}/api/incidents"):
            refused = requests.get(path, headers={**embedded, "Sec-Fetch-Site": site}, timeout=30)
            assert refused.status_code == 403, (site, path, refused.status_code)
    own = requests.get(frame, headers={**embedded, "Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert own.status_code == 200 and own.headers["Content-Type"] == "image/jpeg"
    # a browser without Fetch Metadata still keeps the picture from another site's page
    assert own.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    wait_until("a heatmap", lambda: requests.get(heatmap, timeout=10).status_code == 200, 60)
    latest = requests.get(heatmap, timeout=10)
    assert latest.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert requests.get(f"{url}/", headers=link, timeout=10).status_code == 200
    assert requests.get(f"{url}/api/state", timeout=10).status_code == 200  # curl, a script


def test_the_page_opens_on_any_loopback_address_it_listens_on(tmp_path: Path) -> None:
    """127.0.1.1 (Debian's address for the machine's own name) is this machine as much as
    127.0.0.1: the config took it without a password, but every request was refused (403).
    A name resolving to it is still refused (DNS rebinding)."""
    port = free_port()
    daemon = _start(
        _config(tmp_path, f"127.0.1.1:{port}"), tmp_path / "daemon.log", port, "127.0.1.1"
    )
    try:
        url = f"http://127.0.1.1:{port}"
        assert requests.get(f"{url}/", timeout=10).status_code == 200
        assert requests.get(f"{url}/api/state", timeout=10).status_code == 200
        rebound = requests.get(f"{url}/api/state", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 403
    finally:
        daemon.stop()


def test_an_idle_printers_frame_is_taken_for_the_page(tmp_path: Path) -> None:
    """The printer's API does not answer, so nothing is watched and the camera is not read:
    "Where to look" asks for the frame, and gets one taken for it."""
    port = free_port()
    unreachable = {"kind": "octoprint", "url": "http://127.0.0.1:1", "timeout_s": 1}
    daemon = _start(_config(tmp_path, f"127.0.0.1:{port}", unreachable), tmp_path / "d.log", port)
    try:
        url = f"http://127.0.0.1:{port}"
        state = requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]
        # nothing watched: the API unreachable (idle until its first poll has failed)
        assert state["state"] in ("printer_offline", "idle"), state
        frame = requests.get(f"{url}/api/printers/{PRINTER}/frame.jpg", timeout=30)
        assert frame.status_code == 200 and frame.headers["Content-Type"] == "image/jpeg"
        assert frame.content.startswith(b"\xff\xd8")
    finally:
        daemon.stop()


def test_a_frame_of_now_a_camera_cannot_give_is_unavailable_not_missing(tmp_path: Path) -> None:
    """The mask editor asks for a frame of now; a camera that cannot give one (offline, or
    busy with earlier requests) was answered 404, "not found", as if the printer were not
    there: 503, try again, with the camera's reason."""
    port = free_port()
    offline = {"source": "http://127.0.0.1:1/snapshot", "timeout_s": 1}
    daemon = _start(
        _config(tmp_path, f"127.0.0.1:{port}", camera=offline), tmp_path / "d.log", port
    )
    try:
        url = f"http://127.0.0.1:{port}/api/printers/{PRINTER}/frame.jpg?fresh=1"
        frame = requests.get(url, timeout=30)
        assert frame.status_code == 503, frame.text
        assert frame.text.startswith("503 no frame of now: ") and "127.0.0.1:1" in frame.text
    finally:
        daemon.stop()


def test_a_drawing_over_settings_not_in_force_is_saved_not_refused_as_stale(
    tmp_path: Path,
) -> None:
    """The page draws on the settings in force. Saved settings the watchdog left out (a mask
    edited by hand to hide everything), or a config file edited without a reload, made
    every drawn save "changed elsewhere: draw again": redrawn from the same settings, the
    owner could never save a mask or a region."""
    port = free_port()
    config = _config(tmp_path, f"127.0.0.1:{port}")
    stored = tmp_path / "state" / "overrides.json"
    stored.parent.mkdir(parents=True)
    everything = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    stored.write_text(json.dumps({"printers": {PRINTER: {"detection": {"mask": [everything]}}}}))
    daemon = _start(config, tmp_path / "d.log", port)
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
        settings = f"{url}/api/printers/{PRINTER}/settings"
        shown = requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]
        assert shown["settings"]["mask"] == [] and "error" in shown["saved"], shown
        corner = [[0.7, 0.7], [0.9, 0.7], [0.9, 0.9]]
        r = requests.post(
            settings,
            json={"mask": [corner], "was": {"mask": shown["settings"]["mask"]}},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["detail"] == "saved and applied", r.text
        assert json.loads(stored.read_text())["printers"][PRINTER]["detection"]["mask"] == [corner]
        # the config file given a region, not reloaded: the page still shows none
        edited = yaml.safe_load(config.read_text())
        edited["printers"][0]["detection"] = {"region": [0.0, 0.4, 1.0, 1.0]}
        write_config(config, **edited)
        r = requests.post(
            settings,
            json={"region": [0.1, 0.5, 0.9, 1.0], "was": {"region": None}},
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        region = json.loads(stored.read_text())["printers"][PRINTER]["detection"]["region"]
        assert region == [0.1, 0.5, 0.9, 1.0]
    finally:
        daemon.stop()


def test_a_drawing_made_before_a_reset_is_refused_while_the_reset_is_applied(
    tmp_path: Path,
) -> None:
    """The settings in force lag the file by a reload: tab B, drawn on the mask tab A then
    reset, was compared with them and saved over the reset, unsaid."""
    from watchdog import overrides
    from watchdog.config import DetectionConfig

    first = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]
    base = DetectionConfig()
    overrides.save(tmp_path, base, PRINTER, {"mask": [first]})
    read = overrides.saves_so_far()  # the reload after that save: the mask in force
    in_force = DetectionConfig(mask=[first])
    overrides.reset(tmp_path, PRINTER)  # its reload still running: in force, the mask
    other = [[0.5, 0.5], [0.6, 0.5], [0.6, 0.6]]
    with pytest.raises(overrides.ChangedElsewhere):
        overrides.save(
            tmp_path, base, PRINTER, {"mask": [other]}, drawn_on={"mask": [first]},
            shown=(in_force, read),
        )  # fmt: skip
    assert not (tmp_path / overrides.FILE).exists()  # the reset stands
    # once the reset's reload has read the file, the page shows no mask: drawn on that, saved
    now = overrides.saves_so_far()
    overrides.save(
        tmp_path, base, PRINTER, {"mask": [other]}, drawn_on={"mask": []},
        shown=(base, now),
    )  # fmt: skip


def test_settings_are_validated_saved_shown_by_check_config_and_reset(open_daemon) -> None:
    url, daemon, tmp = open_daemon
    headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
    settings = f"{url}/api/printers/{PRINTER}/settings"
    bad = requests.post(settings, json={"sensitivity": 50}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "sensitivity" in bad.json()["detail"]
    # so low that no frame could ever pass the threshold: detection silently off
    bad = requests.post(settings, json={"sensitivity": 1e-300}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "sensitivity" in bad.json()["detail"]
    bad = requests.post(
        settings, json={"region": [0.8, 0.1, 0.2, 0.9]}, headers=headers, timeout=10
    )
    assert bad.status_code == 400 and "region" in bad.json()["detail"]
    bad = requests.post(settings, json={"judge_start": "maybe"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "judge_start" in bad.json()["detail"]
    # what YAML would read as a number or a boolean is, sent as JSON, a mistake: "no" saved
    # judge_start off, "1.2" a sensitivity, true a consecutive of 1
    for key, loose in [
        ("judge_start", "no"),
        ("judge_start", 0),
        ("sensitivity", "1.2"),
        ("sensitivity", True),
        ("consecutive", "2"),
        ("consecutive", 2.5),
        ("consecutive", True),
    ]:
        bad = requests.post(settings, json={key: loose}, headers=headers, timeout=10)
        assert bad.status_code == 400, (key, loose, bad.text)
        assert bad.json()["detail"].startswith(f"printers.{PRINTER}.detection.{key}: expected")
    bad = requests.post(settings, json={"api": {"url": "http://x"}}, headers=headers, timeout=10)
    assert bad.status_code == 400
    everything = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]  # would silence detection
    bad = requests.post(settings, json={"mask": [everything]}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "nothing would be judged" in bad.json()["detail"]
    assert f"printers.{PRINTER}.detection.mask" in bad.json()["detail"]
    # nothing was saved: not sent to Reset, which would throw away the other saved settings
    assert "not saved: draw a smaller mask" in bad.json()["detail"]
    assert "Reset" not in bad.json()["detail"]
    stored = tmp / "state" / "overrides.json"
    assert not stored.exists()

    mask = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.2]]
    r = requests.post(
        settings,
        json={
            "mask": [mask],
            "region": [0.0, 0.4, 1.0, 1.0],
            "consecutive": 5,
            "judge_start": False,
        },
        headers=headers,
        timeout=60,  # answered once the reload has applied it
    )
    assert r.status_code == 200 and r.json()["detail"] == "saved and applied", r.text
    assert "consecutive: 5" in r.json()["yaml"] and "name: ender3" in r.json()["yaml"]
    assert "judge_start: false" in r.json()["yaml"]
    saved = json.loads(stored.read_text())["printers"][PRINTER]["detection"]
    assert (
        saved["mask"] == [mask]
        and saved["region"] == [0.0, 0.4, 1.0, 1.0]
        and saved["consecutive"] == 5
        and saved["judge_start"] is False
    )

    # Applied without a restart (the watcher is rebuilt through the reload path).
    def in_use() -> dict:
        return requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]["settings"]

    wait_until(
        "the new settings in use",
        lambda: in_use()["consecutive"] == 5 and in_use()["judge_start"] is False,
        30,
        lambda: daemon.log,
    )
    check = run_cli("check-config", "--config", str(tmp / "config.yaml"))
    assert check.returncode == 0, check.stderr
    assert "consecutive: 5" in check.stdout
    assert f"printers.{PRINTER}.detection.mask: from the dashboard ({stored})" in check.stderr

    # An editor opened before that save draws one more mask and saves its whole list: it
    # would undo the mask saved above. Saved only over what it drew on; refused, nothing lost.
    corner = [[0.7, 0.7], [0.9, 0.7], [0.9, 0.9]]
    stale = requests.post(
        settings,
        json={"mask": [corner], "was": {"mask": []}},
        headers=headers,
        timeout=60,
    )
    assert stale.status_code == 409 and stale.json()["stale"], stale.text
    assert "the mask was changed elsewhere" in stale.json()["detail"]
    assert json.loads(stored.read_text())["printers"][PRINTER]["detection"]["mask"] == [mask]
    current = requests.post(
        settings,
        json={"mask": [mask, corner], "was": {"mask": [mask], "region": [0.0, 0.4, 1.0, 1.0]}},
        headers=headers,
        timeout=60,
    )
    assert current.status_code == 200, current.text
    assert json.loads(stored.read_text())["printers"][PRINTER]["detection"]["mask"] == [
        mask,
        corner,
    ]
    # two tabs save over the same drawing at the same moment: both were answered "saved", the
    # first one's mask lost without a word; one is saved, the other told it was stale
    answers: list[requests.Response] = []

    def save(extra: list[list[float]]) -> None:
        answers.append(
            requests.post(
                settings,
                json={"mask": [mask, corner, extra], "was": {"mask": [mask, corner]}},
                headers=headers,
                timeout=60,
            )
        )

    tabs = [
        threading.Thread(target=save, args=([[0.1, 0.5], [0.2, 0.5], [0.2, 0.6]],)),
        threading.Thread(target=save, args=([[0.5, 0.5], [0.6, 0.5], [0.6, 0.6]],)),
    ]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join(120)
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    assert "was changed elsewhere" in next(a for a in answers if a.status_code == 409).text
    [kept] = [a for a in answers if a.status_code == 200]
    stored_mask = json.loads(stored.read_text())["printers"][PRINTER]["detection"]["mask"]
    assert stored_mask == kept.json()["saved"]["mask"]

    r = requests.post(f"{settings}/reset", json={}, headers=headers, timeout=60)
    assert r.status_code == 200 and r.json()["ok"] and not stored.exists(), r.text
    wait_until(
        "the config file's settings back",
        lambda: (
            requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]["settings"][
                "consecutive"
            ]
            == 3
        ),
        30,
        lambda: daemon.log,
    )
    assert (
        "from the dashboard"
        not in run_cli("check-config", "--config", str(tmp / "config.yaml")).stderr
    )


def test_a_broken_overrides_file_is_named_and_a_reload_goes_on_without_it(open_daemon) -> None:
    url, daemon, tmp = open_daemon
    stored = tmp / "state" / "overrides.json"
    stored.write_text('{"printers": {"ender3": {"detection": {"sensitivity": "very"}}}}')
    try:
        check = run_cli("check-config", "--config", str(tmp / "config.yaml"))
        # a warning, as the daemon starting on it would leave it out; not said to be in force
        assert check.returncode == 0 and "warning:" in check.stderr, check.stderr
        assert str(stored) in check.stderr and "sensitivity" in check.stderr
        assert "from the dashboard" not in check.stderr
        # the reload goes on without it, as a start would, naming it
        daemon.signal(signal.SIGHUP)
        wait_until(
            "the reload",
            lambda: "watches with the config file" in daemon.log,
            20,
            lambda: daemon.log,
        )
        assert f"{stored}: " in daemon.log and "reload refused" not in daemon.log, daemon.log
        assert daemon.alive() and requests.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        stored.unlink()


@pytest.mark.parametrize(
    "saved",
    [
        # 40 masks: more than the page can draw (a hand edit, another version)
        {
            "printers": {
                PRINTER: {
                    "detection": {
                        "mask": [[[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]] * 40,
                        "consecutive": 5,
                    }
                }
            }
        },
        "{not json",
        # a mask that hides the whole watched region (the model or the region changed since)
        {"printers": {PRINTER: {"detection": {"mask": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}}},
    ],
    ids=["beyond-the-schema", "unreadable", "hides-the-region"],
)
def test_a_daemon_starts_over_saved_settings_it_cannot_apply_and_says_so(
    tmp_path: Path, saved: object
) -> None:
    """Saved page settings the daemon cannot apply used to stop it from starting (systemd
    restarting it in a loop, nothing watched, the page that could reset them down). Now the
    printer watches with the config file's settings, the log and the page name the file and
    what is wrong, the file is kept as it was, and the page's reset takes it away."""
    port = free_port()
    config = _config(tmp_path, f"127.0.0.1:{port}")
    stored = tmp_path / "state" / "overrides.json"
    stored.parent.mkdir()
    body = saved if isinstance(saved, str) else json.dumps(saved)
    stored.write_text(body)
    daemon = _start(config, tmp_path / "daemon.log", port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert f"{stored}: " in daemon.log and "watches with the config file's settings" in (
            daemon.log
        ), daemon.log
        printer = requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]
        assert printer["settings"]["consecutive"] == 3 and printer["settings"]["mask"] == []
        assert str(stored) in printer["saved"]["error"], printer["saved"]
        wait_until(
            "frames watched",
            lambda: (
                requests.get(f"{url}/api/state", timeout=10).json()["printers"][0].get("score")
                is not None
            ),
            30,
            lambda: daemon.log,
        )
        assert stored.read_text() == body  # nothing lost
        # a reload (the config file edited, another printer's settings saved) is not refused
        # for them: it leaves them out again, as the start did
        daemon.signal(signal.SIGHUP)
        wait_until("reloaded", lambda: "reloaded" in daemon.log, 30, lambda: daemon.log)
        # said after "reloaded": waited for, not read at the moment that line is in the log
        wait_until(
            "the settings left out again",
            lambda: daemon.log.count("watches with the config file's settings") == 2,
            30,
            lambda: daemon.log,
        )
        assert "reload refused" not in daemon.log, daemon.log
        # check-config names it as the daemon does, a warning: it runs what the daemon runs
        # (the installer's check of a new version refused an upgrade the daemon would start)
        check = run_cli("check-config", "--config", str(config))
        assert check.returncode == 0, check.stderr
        assert "warning:" in check.stderr and "overrides.json" in check.stderr, check.stderr
        headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
        r = requests.post(
            f"{url}/api/printers/{PRINTER}/settings/reset", json={}, headers=headers, timeout=60
        )
        assert r.status_code == 200, r.text
        wait_until(
            "the reset shown",
            lambda: (
                "error"
                not in requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]["saved"]
            ),
            30,
            lambda: daemon.log,
        )
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log


def test_reset_sets_an_unreadable_saved_settings_file_aside_and_the_watcher_comes_back(
    open_daemon,
) -> None:
    """The error names the file and says "fix or delete it"; the page's "back to the config
    file" button does the deleting for the owner, keeping the file under another name."""
    url, daemon, tmp = open_daemon
    stored = tmp / "state" / "overrides.json"
    stored.write_text("{not json")
    headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
    r = requests.post(
        f"{url}/api/printers/{PRINTER}/settings/reset", json={}, headers=headers, timeout=60
    )
    assert r.status_code == 200 and "set aside" in r.json()["detail"], r.text
    [aside] = stored.parent.glob("overrides.json.unreadable-*")
    assert aside.read_text() == "{not json" and not stored.exists()
    wait_until("the reload", lambda: daemon.log.count("reloaded") >= 1, 30, lambda: daemon.log)
    assert daemon.alive() and requests.get(f"{url}/healthz", timeout=10).status_code == 200
    aside.unlink()


def test_a_saved_settings_file_the_page_never_wrote_is_refused_and_set_aside_each_time(
    open_daemon,
) -> None:
    """A saved-settings file the page never wrote (24 MB of mask corners: the page polled a
    state that took 18 s to answer and gigabytes to make), a mask of more corners than the
    page saves, or a FIFO (a read that never ends: the page hung) is refused in one line
    naming the file; the
    "back to the config file" button sets each aside under its own name (two in one second
    took the same name: the second was lost, or could not be set aside)."""
    import os

    url, daemon, tmp = open_daemon
    stored = tmp / "state" / "overrides.json"
    headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
    corners = [[0.5, 0.5]] * 400_000
    huge_mask = {"printers": {PRINTER: {"detection": {"mask": [corners]}}}}
    cases = [
        (json.dumps(huge_mask), "detection.mask"),
        (
            '{"printers": {}, "pad": "' + "x" * (9 * 2**20) + '"}',
            "larger than the watchdog ever writes it",
        ),
        (None, "not a regular file"),
    ]
    for body, said in cases:
        if body is None:
            os.mkfifo(stored)
        else:
            stored.write_text(body)
        state = requests.get(f"{url}/api/state", timeout=30).json()
        error = state["printers"][0]["saved"]["error"]
        assert str(stored) in error and said in error and "fix or delete the file" in error, error
        r = requests.post(
            f"{url}/api/printers/{PRINTER}/settings/reset", json={}, headers=headers, timeout=60
        )
        assert r.status_code == 200 and "set aside" in r.json()["detail"], r.text
        assert not stored.exists()
    assert len(list(stored.parent.glob("overrides.json.unreadable-*"))) == 3
    assert daemon.alive()


def test_a_save_or_reset_the_daemon_cannot_apply_says_so(open_daemon) -> None:
    """The config file broken meanwhile: a reset answered "back to the config file's
    settings" and deleted them while the reload was refused; a save into a config whose
    model folder is gone answered "saved" while the reload that should apply it was refused,
    and the page went on showing values not in force. Now each says what happened and why."""
    url, daemon, tmp = open_daemon
    config = tmp / "config.yaml"
    good = config.read_text()
    headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
    settings = f"{url}/api/printers/{PRINTER}/settings"
    stored = tmp / "state" / "overrides.json"

    def in_use() -> dict:
        return requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]["settings"]

    try:
        config.write_text(good + "colour: red\n")  # a typo: the file itself does not load
        saved = requests.post(settings, json={"consecutive": 6}, headers=headers, timeout=60)
        assert saved.status_code == 400 and "colour: unknown key" in saved.json()["detail"]
        stored.write_text(json.dumps({"printers": {PRINTER: {"detection": {"consecutive": 4}}}}))
        reset = requests.post(f"{settings}/reset", json={}, headers=headers, timeout=60)
        assert reset.status_code == 400 and "nothing changed" in reset.json()["detail"], reset.text
        assert stored.exists()  # kept for when the file is fixed

        config.write_text(good.replace(str(MODEL), str(tmp / "no-such-model")))
        r = requests.post(settings, json={"consecutive": 6}, headers=headers, timeout=60)
        answer = r.json()
        assert answer["ok"] is False and "saved, but not applied" in answer["detail"], answer
        assert "no-such-model" in answer["detail"] and "consecutive: 6" in answer["yaml"], answer
        assert in_use()["consecutive"] == 3
        # said by every poll, not only in the answer to the save: the page shows it until a
        # reload applies (it went on saying "Saved from this page" once the message was gone)
        state = requests.get(f"{url}/api/state", timeout=10).json()
        assert "no-such-model" in (state["reload_refused"] or ""), state
    finally:
        config.write_text(good)
        stored.unlink(missing_ok=True)
        daemon.signal(__import__("signal").SIGHUP)
    wait_until("the file's settings", lambda: in_use()["consecutive"] == 3, 30, lambda: daemon.log)
    wait_until(
        "the refusal gone once a reload applies",
        lambda: requests.get(f"{url}/api/state", timeout=10).json()["reload_refused"] is None,
        30,
        lambda: daemon.log,
    )


def test_a_save_over_a_model_changed_since_the_last_reload_says_it_was_not_applied(
    open_daemon,
) -> None:
    """The config now names a retrained model that watches another region (not reloaded yet):
    a mask saved on the page passes the running model's check, but hides the whole region of
    the new one, so the reload the save triggers left out every saved setting of the
    printer. The answer said "saved and applied", later "keeps its running settings", while
    the printer watched with the file's: the owner's saved sensitivity silently gone. Refused
    unsaved, as a mask hiding the running model's region is."""
    import shutil

    url, daemon, tmp = open_daemon
    config = tmp / "config.yaml"
    good = config.read_text()
    retrained = tmp / "retrained"
    shutil.copytree(MODEL, retrained)
    meta = json.loads((retrained / "model.json").read_text())
    meta["preprocess"]["roi"] = [0.0, 0.0, 0.2, 0.2]  # the top-left corner only
    (retrained / "model.json").write_text(json.dumps(meta))
    headers = {"X-CSRF-Token": _csrf(requests.get(f"{url}/", timeout=10).text)}
    settings = f"{url}/api/printers/{PRINTER}/settings"
    corner = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.3], [0.0, 0.3]]  # none of the bottom half
    stored = tmp / "state" / "overrides.json"

    def in_use() -> dict:
        return requests.get(f"{url}/api/state", timeout=10).json()["printers"][0]["settings"]

    try:
        answer = requests.post(settings, json={"sensitivity": 1.5}, headers=headers, timeout=60)
        assert answer.json()["detail"] == "saved and applied", answer.json()
        config.write_text(good.replace(str(MODEL), str(retrained)))
        answer = requests.post(settings, json={"mask": [corner]}, headers=headers, timeout=60)
        assert answer.status_code == 400 and answer.json()["ok"] is False, answer.json()
        assert "not saved: draw a smaller mask" in answer.json()["detail"], answer.json()
        assert json.loads(stored.read_text())["printers"][PRINTER]["detection"] == {
            "sensitivity": 1.5
        }
        assert in_use()["sensitivity"] == 1.5 and in_use()["mask"] == []
    finally:
        config.write_text(good)
        stored.unlink(missing_ok=True)
        daemon.signal(__import__("signal").SIGHUP)
    wait_until(
        "the file's model again",
        lambda: requests.get(f"{url}/status", timeout=10).json()["model"] == str(MODEL),
        30,
        lambda: daemon.log,
    )


def test_a_csrf_header_of_any_characters_is_refused_not_an_error(open_daemon) -> None:
    url, _, _ = open_daemon
    r = requests.post(
        f"{url}/api/command",
        json={"printer": PRINTER, "verb": "enable"},
        headers={"X-CSRF-Token": "é" * 43},
        timeout=10,
    )
    assert r.status_code == 403, r.text


def test_a_body_that_is_not_a_json_object_is_a_one_line_400_never_a_server_error(
    open_daemon,
) -> None:
    """JSON nested a hundred thousand deep makes the parser give up with a RecursionError,
    which Flask's lenient parse lets through: it was a 500 and a traceback in the log."""
    url, daemon, _ = open_daemon
    token = requests.get(f"{url}/", timeout=10).text.split('name="csrf-token" content="')[1]
    headers = {"X-CSRF-Token": token.split('"')[0], "Content-Type": "application/json"}
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/command", f"/api/printers/{PRINTER}/settings"):
        for body in (deep, "not json", "[1, 2]"):
            r = requests.post(url + path, data=body, headers=headers, timeout=10)
            assert r.status_code == 400 and "expected a JSON object" in r.json()["detail"], r.text
    assert "Traceback" not in daemon.log


def test_a_recording_read_to_its_end_is_said_so_not_shown_as_live(open_daemon) -> None:
    """A folder camera (a config tried on a recording) read to its end: the page showed its
    last state and score as if live, the camera online, for as long as the daemon ran. Last
    of the tests on this daemon: the others need its recording still playing."""
    url, _, _ = open_daemon
    wait_until(
        "the recording's end",
        lambda: (
            requests.get(f"{url}/api/state", timeout=10)
            .json()["printers"][0]
            .get("recording_ended")
        ),
        60,
    )


def test_one_printers_saved_settings_from_another_version_leave_the_others_applied(
    tmp_path: Path,
) -> None:
    """One printer's saved settings holding a key the page does not save (a file written by
    another version): every printer's settings were left out, and every save refused. That
    printer watches with the config file's; the others keep theirs; its reset keeps the file
    aside and the others' settings."""
    from watchdog.config import ConfigError
    from watchdog.overrides import (
        load_effective_config,
        load_starting_config,
        reset,
        saved_and_refusal,
    )

    state = tmp_path / "state"
    state.mkdir()
    config = write_config(
        tmp_path / "c.yaml",
        storage={"dir": str(state)},
        printers=[{"name": "p1"}, {"name": "p2"}],
    )
    p1 = {"sensitivity": 0.7, "mask": [[[0, 0], [0.2, 0], [0.2, 0.2]]]}
    stored = state / "overrides.json"
    stored.write_text(
        json.dumps(
            {
                "printers": {
                    "p1": {"detection": p1},
                    "p2": {"detection": {"sensitivity": 1.2, "min_area": 5}},
                }
            }
        )
    )
    cfg, refused = load_starting_config(config)
    by_name = {p.name: p.detection for p in cfg.printers}
    assert by_name["p1"].sensitivity == 0.7 and len(by_name["p1"].mask) == 1
    assert by_name["p2"].sensitivity == 1.0
    [why] = refused
    assert "printers.p2" in why and "printer p2 watches with the config file's settings" in why
    assert saved_and_refusal(state, "p1", by_name["p1"])[1] is None
    # a command about p1 (calibrate --printer p1) is not stopped by p2's entry; one about p2 is
    assert load_effective_config(config, "p1").printers[0].detection.sensitivity == 0.7
    with pytest.raises(ConfigError, match="printers.p2"):
        load_effective_config(config, "p2")
    whole = stored.read_text()
    if os.geteuid() == 0:  # a full disk: the reset is refused, and the file is as it was
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], check=True)
        try:
            stored.write_text(whole)
            with contextlib.suppress(OSError), open(state / "filler", "wb") as filler:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
            with pytest.raises(OSError):
                reset(state, "p2")
            assert stored.read_text() == whole
            assert load_starting_config(config)[0].printers[0].detection.sensitivity == 0.7
        finally:
            subprocess.run(["umount", str(state)], check=True)
        stored.write_text(whole)
    said = reset(state, "p2")
    assert "set aside" in said, said
    assert json.loads(stored.read_text()) == {"printers": {"p1": {"detection": p1}}}
    [aside] = state.glob("overrides.json.unreadable-*")
    assert "min_area" in aside.read_text()
