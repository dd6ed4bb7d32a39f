"""The status server on 127.0.0.1: its four GET paths, and hostile clients.

Real sockets throughout: malformed and oversized requests, path traversal, other methods and
slow clients get a 4xx or a closed connection, and the server keeps answering afterwards.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from watchdog.comms.http import MAX_BODY_BYTES, MAX_HEAD_BYTES, StatusServer
from watchdog.config import parse_config
from watchdog.errors import UsageError
from watchdog.metrics import Metrics

SECRETS = ("octo-key-0123456789abcdef", "mqtt-pass-s3cr3t")


@dataclass
class Daemon:
    """What the daemon hands the server: its metrics, status, images and health."""

    metrics: Metrics = field(default_factory=Metrics)
    healthy: bool = True
    images: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def latest_jpeg(self, name: str) -> bytes | None:
        self.asked.append(name)
        return self.images.get(name)

    def status(self) -> dict:
        cfg = parse_config(
            {
                "mqtt": {"host": "127.0.0.1", "username": "u", "password": SECRETS[1]},
                "printers": [
                    {
                        "name": "ender3",
                        "api": {
                            "kind": "octoprint",
                            "url": "http://127.0.0.1:5000",
                            "api_key": SECRETS[0],
                        },
                    }
                ],
            }
        )
        return {
            "printers": {"ender3": {"state": "watching", "score": 0.01}},
            "config": cfg.masked(),
        }


@pytest.fixture
def daemon() -> Iterator[tuple[Daemon, StatusServer]]:
    d = Daemon()
    d.metrics.add_printer("ender3")
    d.images["ender3"] = cv2.imencode(".jpg", np.full((24, 32, 3), 99, np.uint8))[1].tobytes()
    server = _server(d, request_timeout_s=0.5, max_connections=8)
    yield d, server
    server.stop()


def _server(d: Daemon, request_timeout_s: float, max_connections: int) -> StatusServer:
    """``d``'s endpoints served on a free loopback port."""
    server = StatusServer(
        "127.0.0.1:0",
        d.status,
        d.metrics.registry,
        d.latest_jpeg,
        lambda: d.healthy,
        request_timeout_s=request_timeout_s,
        max_connections=max_connections,
    )
    server.start()
    return server


def raw(server: StatusServer, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may already have answered and closed
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def still_serving(server: StatusServer) -> bool:
    return requests.get(server.url + "/healthz", timeout=10).status_code == 200


def test_healthz_follows_the_loop(daemon) -> None:
    d, server = daemon
    r = requests.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.text.strip() == "ok"
    d.healthy = False
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 503


def test_status_is_the_daemons_json_without_secrets(daemon) -> None:
    d, server = daemon
    r = requests.get(server.url + "/status", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json()["printers"]["ender3"]["state"] == "watching"
    for path in ("/status", "/metrics", "/healthz", "/nope"):
        text = requests.get(server.url + path, timeout=10).text
        assert not any(s in text for s in SECRETS), path


def test_metrics_parse_as_prometheus_text(daemon) -> None:
    d, server = daemon
    d.metrics.observe_score("ender3", 0.03, 0.02, True, 0.012)
    d.metrics.observe_action("ender3", "pause", "done")
    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["printer_watchdog_score"].samples[0].value == pytest.approx(0.03)
    assert families["printer_watchdog_score"].samples[0].labels == {"printer": "ender3"}
    actions = families["printer_watchdog_actions"].samples
    assert any(
        s.labels == {"printer": "ender3", "action": "pause", "outcome": "done"} and s.value == 1
        for s in actions
    )
    assert "printer_watchdog_inference_seconds" in families
    assert "python_gc_objects_collected" not in families  # our registry, not the global one


def test_latest_jpeg(daemon) -> None:
    d, server = daemon
    r = requests.get(server.url + "/printers/ender3/latest.jpg", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (24, 32, 3)
    assert requests.get(server.url + "/printers/prusa/latest.jpg", timeout=10).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/index.html",
        "/status/",
        "/healthz/x",
        "/watchdog/",
        "/printers/",
        "/printers/ender3",
        "/printers/ender3/latest.png",
        "/printers/../../etc/passwd",
        "/printers/..%2f..%2fetc%2fpasswd/latest.jpg",
        "/printers/%2e%2e/latest.jpg",
        "/printers/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/../../../../etc/passwd",
        "//etc/passwd",
        "/printers/ender3/../../status",
    ],
)
def test_unknown_paths_and_traversal_are_404(daemon, path: str) -> None:
    d, server = daemon
    answer = raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(answer) == 404
    assert b"root:" not in answer
    assert all(
        name == "ender3" or name.replace("_", "").replace("-", "").isalnum() for name in d.asked
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_405(daemon, method: str) -> None:
    d, server = daemon
    r = requests.request(
        method,
        server.url + "/status",
        timeout=10,
        data=b"{}" if method in ("POST", "PUT", "PATCH") else None,
    )
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /status HTTP/1.1 extra\r\n\r\n",
        b"\x00\xff\xfe\xfd\r\n\r\n",
        b"GET /status HTTP/1.1\r\nno colon header\r\n\r\n",
    ],
)
def test_malformed_requests_get_4xx_and_the_server_goes_on(daemon, request_bytes: bytes) -> None:
    d, server = daemon
    answer = raw(server, request_bytes)
    assert 400 <= status_of(answer) < 600 and status_of(answer) != 200
    assert still_serving(server)


def test_oversized_request_line_is_refused(daemon) -> None:
    d, server = daemon
    answer = raw(server, b"GET /" + b"a" * (MAX_HEAD_BYTES * 4) + b" HTTP/1.1\r\n\r\n")
    assert status_of(answer) in (414, 431)  # waitress counts the request line into the head
    assert still_serving(server)


def test_oversized_headers_are_431(daemon) -> None:
    d, server = daemon
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 100) for i in range(200))
    answer = raw(server, b"GET /status HTTP/1.1\r\n" + headers + b"\r\n")
    assert status_of(answer) == 431
    assert answer.split(b"\r\n\r\n", 1)[1] == b"431 the request's head is over the 8 KiB allowed\n"
    assert still_serving(server)


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_refused_in_one_line(daemon, chunked: bool) -> None:
    """Refused before the application sees it, in the server's three lines naming the
    server ("Request Entity Too Large / exceeds max_body of 262144 / (generated by ...)"),
    which the page shows as a save's answer: one line of the watchdog's own now."""
    d, server = daemon
    body = b"x" * (MAX_BODY_BYTES + 1)
    if chunked:
        r = requests.post(server.url + "/actions/" + "t" * 40, data=iter([body]), timeout=10)
    else:
        r = requests.post(server.url + "/actions/" + "t" * 40, data=body, timeout=10)
    assert r.status_code == 413
    assert r.text == "413 the request's body is over the 256 KiB allowed\n"
    assert still_serving(server)


def test_client_that_never_finishes_its_request_is_cut_off(daemon) -> None:
    d, server = daemon
    answer = raw(
        server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    )  # no blank line, ever (raw() gives up after 10 s)
    assert answer == b"" or status_of(answer) == 408  # disconnected, or told so first


def test_slowloris_dripping_bytes_is_cut_off(daemon) -> None:
    d, server = daemon
    cut = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(100):  # 100 x 0.1 s: far longer than the server's 0.5 s request timeout
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                cut = True
                break
            time.sleep(0.1)
            s.setblocking(False)
            try:
                data = s.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            s.setblocking(True)
            if data is not None:
                cut = True
                assert data == b"" or status_of(data) == 408
                break
    assert cut, "the server kept a dripping client for 10 s"
    assert still_serving(server)


def test_idle_connections_do_not_lock_out_the_server(daemon) -> None:
    d, server = daemon
    idle = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(12)
    ]  # > max_connections
    try:
        for _ in range(100):  # bounded: idle clients are dropped after the request timeout
            try:
                if still_serving(server):
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise AssertionError("the server never answered again")
    finally:
        for s in idle:
            s.close()


def test_one_client_holding_idle_connections_does_not_keep_others_waiting(caplog) -> None:
    """A client that opens ``max_connections`` connections and keeps them idle, reopening each
    one cut, had every other client wait for ``request_timeout_s``: a phone's button, the
    owner's page, the health check. One client holds a quarter of them at most now; its
    others are closed at once, and another client is answered while it holds its share."""
    # idle connections are not cut while the test runs
    server = _server(Daemon(), request_timeout_s=60.0, max_connections=32)
    hog = []
    try:
        for _ in range(40):  # from 127.0.0.2: another machine on the network
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", server.port))
            except OSError:  # the listen queue is full: more wait there
                s.close()
                continue
            hog.append(s)
        kept = []
        for s in hog:  # those the server keeps open stay silent; those it closed read EOF
            s.settimeout(1.0)
            try:
                kept.append(s.recv(1) != b"")
            except TimeoutError:
                kept.append(True)
            except ConnectionResetError:
                kept.append(False)
        assert sum(kept) == 8, sum(kept)
        r = requests.get(server.url + "/healthz", timeout=10)  # from 127.0.0.1
        assert r.status_code == 200
        assert "127.0.0.2 holds 8 connections" in caplog.text
        assert caplog.text.count("holds 8 connections") == 1  # said once, not once a connection
    finally:
        for s in hog:
            s.close()
        server.stop()


def test_no_version_in_server_header(daemon) -> None:
    d, server = daemon
    r = requests.get(server.url + "/healthz", timeout=10)
    assert "Python" not in r.headers.get("Server", "") and "BaseHTTP" not in r.headers.get(
        "Server", ""
    )


def test_callback_failure_is_a_500_not_a_crash(daemon) -> None:
    d, server = daemon
    server.status = lambda: 1 / 0
    assert requests.get(server.url + "/status", timeout=10).status_code == 500
    assert still_serving(server)


def test_stop_closes_the_port_and_joins(daemon) -> None:
    d, server = daemon
    thread = server._thread
    server.stop()
    assert not thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", timeout=10)


def test_bad_listen_address_names_the_key() -> None:
    with pytest.raises(UsageError, match="http.listen"):
        StatusServer("nonsense", dict, Metrics().registry, lambda n: None, lambda: True)
    busy = StatusServer("127.0.0.1:0", dict, Metrics().registry, lambda n: None, lambda: True)
    busy.start()
    try:
        clash = StatusServer(
            f"127.0.0.1:{busy.port}", dict, Metrics().registry, lambda n: None, lambda: True
        )
        with pytest.raises(UsageError, match="http.listen"):
            clash.start()
    finally:
        busy.stop()


def test_an_address_of_a_network_not_up_yet_is_listened_on_with_a_warning(caplog) -> None:
    """``http.listen`` naming the Pi's own LAN address, and the router slower than the Pi
    after a power cut: the daemon exited at each of systemd's restarts until they ran out,
    and the printer stayed unwatched all night. 192.0.2.1 is on no machine (TEST-NET-1)."""
    server = StatusServer("192.0.2.1:0", dict, Metrics().registry, lambda n: None, lambda: True)
    with caplog.at_level(logging.WARNING):
        server.start()
    try:
        assert server.port > 0
        [said] = [r.getMessage() for r in caplog.records if "http.listen" in r.getMessage()]
        assert "no network of this machine has the address 192.0.2.1 yet" in said
    finally:
        server.stop()


def test_status_json_is_parseable_with_odd_values(daemon) -> None:
    d, server = daemon
    server.status = lambda: {"when": time, "score": float("nan"), "scores": [float("inf"), 1.5]}

    def strict(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    r = requests.get(server.url + "/status", timeout=10)
    data = json.loads(r.text, parse_constant=strict)
    assert r.status_code == 200 and data["score"] is None and data["scores"] == [None, 1.5]
    assert data["when"].startswith("<module")


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_no_file_descriptor_leak_over_many_requests(daemon) -> None:
    d, server = daemon
    for _ in range(5):  # warm-up: lazy imports, pools
        requests.get(server.url + "/metrics", timeout=10)
    before = open_fds()
    for i in range(40):
        requests.get(
            server.url + ("/status", "/metrics", "/nope", "/printers/ender3/latest.jpg")[i % 4],
            timeout=10,
        ).close()
        raw(server, (b"GARBAGE\r\n\r\n", b"POST /status HTTP/1.1\r\n\r\n")[i % 2])
    assert open_fds() <= before + 2


def test_healthz_answers_while_slow_clients_hold_connections() -> None:
    """More slow clients than worker threads (some dripping their request, some never reading
    their answer) must not keep /healthz waiting: requests are read and written in the server's
    event loop, and only complete requests reach the 4 workers."""
    metrics = Metrics()
    big = b"\xff\xd8" + b"\x00" * 2_000_000  # far more than a socket buffer holds
    server = StatusServer(
        "127.0.0.1:0",
        dict,
        metrics.registry,
        lambda n: big,
        lambda: True,
        request_timeout_s=60,
        max_connections=32,
    )
    server.start()
    held: list[socket.socket] = []

    def connect(i: int) -> socket.socket:  # from 4 other machines (one holds 8 at most)
        return socket.create_connection(
            ("127.0.0.1", server.port), timeout=10, source_address=(f"127.0.0.{2 + i % 4}", 0)
        )

    try:
        for i in range(10):  # request heads that never end
            s = connect(i)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
        for i in range(10):  # big answers nobody reads
            s = connect(i)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /printers/ender3/latest.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(s)
        for _ in range(5):
            r = requests.get(server.url + "/healthz", timeout=10)  # a starved server would time out
            assert r.status_code == 200 and r.text.strip() == "ok"
    finally:
        for s in held:
            s.close()
        server.stop()
