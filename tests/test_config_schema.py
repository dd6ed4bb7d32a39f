"""The config schema's models behave as the daemon relies on: frozen sections compared by
value (a reload rebuilds what changed), copies with one section replaced (dashboard
settings), defaults never shared between printers, secrets never printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from watchdog.config import Config, ConfigError, DetectionConfig, parse_config
from watchdog.overrides import _merge


def _config(**printer: object) -> Config:
    return parse_config({"printers": [{"name": "p1", **printer}]})


def test_sections_compare_by_value_and_cannot_be_changed_in_place() -> None:
    a = _config(detection={"sensitivity": 1.5})
    b = _config(detection={"sensitivity": "1.5"})
    assert a == b and hash(a.printers[0]) == hash(b.printers[0])
    assert a != _config(detection={"sensitivity": 2})
    with pytest.raises(AttributeError, match="read-only"):
        a.printers[0].detection.sensitivity = 3.0


def test_a_copy_replaces_one_section_and_leaves_the_original() -> None:
    config = _config()
    tuned = config.printers[0].model_copy(update={"detection": DetectionConfig(consecutive=5)})
    assert tuned.detection.consecutive == 5 and tuned.camera == config.printers[0].camera
    assert config.printers[0].detection.consecutive == 3


def test_list_defaults_are_not_shared_between_printers() -> None:
    config = parse_config({"printers": [{"name": "a"}, {"name": "b"}]})
    first, second = (p.detection.mask for p in config.printers)
    first.append([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)])
    assert second == []


def test_secrets_are_masked_in_repr_and_dump_but_readable_by_the_code() -> None:
    config = _config(api={"kind": "octoprint", "url": "http://o", "api_key": "s3cret-key"})
    api = config.printers[0].api
    assert "s3cret-key" not in repr(config) and "s3cret-key" not in str(config.masked())
    assert api.api_key is not None and api.api_key.get_secret_value() == "s3cret-key"


def test_every_problem_is_listed_with_its_key_in_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "mqtt": {"port": "x"},
                "http": {"bogus": 1},
                "printers": [{"name": "p1", "camera": {"interval_s": -1}}],
            },
            "c.yaml",
        )
    assert str(err.value) == (
        "c.yaml: mqtt.port: must be a whole number, got text; http.bogus: unknown key; "
        "printers.0.camera.interval_s: must be greater than or equal to 0"
    )


def test_a_key_of_two_words_is_named_whole_a_secrets_name_and_value_is_not() -> None:
    """A key with a space is a mistyped key (``judge start``), shown whole; a secret's name
    and a space before its value (``password hunter2``) hides the value."""
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "mqtt": {"password hunter22": None},
                "printers": [{"name": "p1", "detection": {"judge start": True}}],
            },
            "c.yaml",
        )
    said = str(err.value)
    assert "printers.0.detection.judge start: unknown key (did you mean judge_start?)" in said, said
    assert "mqtt.password ***: unknown key" in said and "hunter22" not in said, said


def test_dashboard_settings_are_refused_in_the_same_words_as_the_yaml() -> None:
    with pytest.raises(ConfigError) as err:
        _merge(DetectionConfig(), {"sensitivity": 0, "consecutive": 1.5}, "printers.p1.detection")
    assert str(err.value) == (
        "printers.p1.detection.consecutive: must be a whole number, got a number; "
        "printers.p1.detection.sensitivity: must be greater than or equal to 0.1"
    )


def test_a_mask_too_large_to_have_been_drawn_is_refused_in_one_line() -> None:
    """A saved mask is read and shown on every poll of the page: its size is bounded."""
    triangle = [[0, 0], [0.1, 0], [0, 0.1]]
    assert len(_config(detection={"mask": [triangle] * 32}).printers[0].detection.mask) == 32
    with pytest.raises(ConfigError) as err:
        _config(detection={"mask": [triangle] * 13_000})
    assert str(err.value) == "config: printers.0.detection.mask: takes at most 32 items, got 13000"
    with pytest.raises(ConfigError) as err:
        _merge(DetectionConfig(), {"mask": [[[0.5, 0.5]] * 101]}, "printers.p1.detection")
    assert str(err.value) == "printers.p1.detection.mask.0: takes at most 100 items, got 101"


def test_an_api_key_written_as_a_yaml_block_loses_its_line_end_and_one_inside_is_refused() -> None:
    """``api_key: |`` keeps a line break at its end: no HTTP header can carry one, and the
    request's error would show the key escaped, past the log's masking."""
    import yaml

    text = "printers:\n  - name: p1\n    api:\n      kind: octoprint\n      url: http://o\n      api_key: |\n        KEY123\n"
    config = parse_config(yaml.safe_load(text))
    assert config.printers[0].api.api_key.get_secret_value() == "KEY123"
    with pytest.raises(ConfigError) as err:
        _config(api={"kind": "octoprint", "url": "http://o", "api_key": "KEY\n123"})
    assert "printers.0.api.api_key: holds a line break" in str(err.value)
    assert "KEY" not in str(err.value)


def test_the_mask_editor_stops_at_the_bounds_the_config_takes() -> None:
    """The page's editor refuses a 33rd mask or a 101st corner as it is drawn, not at Save."""
    from pathlib import Path

    from watchdog.config import MASK_POINTS, MASK_POLYGONS

    js = (Path(__file__).parents[1] / "watchdog" / "web" / "static" / "app.js").read_text()
    assert f"const MASK_POLYGONS = {MASK_POLYGONS}, MASK_POINTS = {MASK_POINTS};" in js


@pytest.mark.parametrize(
    "url",
    [
        "http://cam.local/snapshot.cgi?user=admin&pwd=a@b",  # a password in the query
        "http://cam.local:8080/?action=stream&email=me@x.org",
        "rtsp://192.168.1.5:554/user=admin&password=p@ss&channel=1",  # a DVR's path
        "http://admin:p%2Fw%23d@cam.local/snap",  # '/' and '#' percent-encoded
    ],
)
def test_camera_urls_with_an_at_sign_in_a_value_still_load(url: str) -> None:
    assert _config(camera={"source": url}).printers[0].camera.source == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # a port out of range blamed the password's '/', '?', '#' or '@'
        ("http://admin:pw@127.0.0.1:99999/snap", "its port 99999 is beyond 65535"),
        ("http://cam.local:70000/snap", "its port 70000 is beyond 65535"),
        ("http://admin:p/w@cam.local/snap", "must be percent-encoded"),
        # a ']' in the password read as a broken IPv6 address: the parser's own words
        ("http://admin:pw]x@cam.local/snap", "%5D"),
        ("http://[fe80::1/snap", "its host or port cannot be read"),
        ("http://cam.local:80x/snap", "check the port after its host"),
        # "ab%cd9": the camera was sent a password it never had, and refused it
        ("http://admin:pw%cd9@cam.local/snap", "a '%' itself is written %25"),
    ],
)
def test_an_address_that_cannot_be_read_says_what_is_wrong_with_it(url: str, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(camera={"source": url})
    assert said in str(err.value) and "pw" not in str(err.value), err.value


def test_a_number_too_large_for_a_float_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"printers\.0\.camera\.interval_s: must be a finite"):
        _config(camera={"interval_s": 10**400})


def test_a_model_that_would_inherit_fields_or_share_a_list_default_is_refused_when_written() -> (
    None
):
    """Defaults and checks are read from the class itself: an inherited field would silently
    lose them, and a plain list default would be one list for every printer."""
    from watchdog.schema import Field, Model

    class Section(Model):
        size: int = Field(1, ge=1)

    with pytest.raises(TypeError, match="does not inherit"):

        class Larger(Section):
            extra: int = 2

    with pytest.raises(TypeError, match="default_factory"):

        class Shared(Model):
            items: list[int] = []  # noqa: RUF012


@pytest.mark.parametrize("name", ["failures", "false_alarms"])
def test_a_printer_cannot_take_the_name_of_a_folder_kept_beside_its_recordings(name: str) -> None:
    """``collected/<printer>/failures/`` holds confirmed failures: a printer named so would
    have its good prints read as failures by the trainer."""
    with pytest.raises(ConfigError) as err:
        parse_config({"printers": [{"name": name}]})
    assert str(err.value) == (
        f"config: printers.0.name: '{name}' is the name of a folder the watchdog keeps beside "
        "each printer's recordings: choose another name"
    )


@pytest.mark.parametrize(
    ("mqtt", "key"),
    [
        # a wildcard in a topic the daemon subscribes to ended its MQTT thread at connect
        ({"homeassistant": {"discovery_prefix": "homeassistant/#"}}, "discovery_prefix"),
        ({"homeassistant": {"discovery_prefix": "home+assistant"}}, "discovery_prefix"),
        # a URL or a user and password in the host was tried as a host name for ever, and the
        # password shown in every "cannot connect" line
        ({"host": "mqtt://broker:1883"}, "mqtt.host"),
        ({"host": "user:s3cret@broker"}, "mqtt.host"),
        ({"host": "broker:1883"}, "mqtt.host"),
    ],
)
def test_mqtt_settings_that_could_never_work_are_refused_naming_the_key(
    mqtt: dict[str, object], key: str
) -> None:
    raw = {
        "printers": [{"name": "e3", "camera": {"source": "/tmp"}}],
        "mqtt": {"host": "broker", **mqtt},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert key in message and "\n" not in message and "s3cret" not in message, message


@pytest.mark.parametrize(("first", "second"), [("ender3", "Ender3"), ("a-b", "a_b"), ("x", "x_")])
def test_printers_home_assistant_would_name_alike_are_refused(first: str, second: str) -> None:
    """Home Assistant makes entity ids from the device's name lower case, every run of other
    characters one ``_``: the second printer's entities became ``..._2``, which an automation
    written for one never names. Without discovery the names are told apart everywhere."""
    raw = {"printers": [{"name": first}, {"name": second}], "mqtt": {"host": "broker"}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    slug = first.lower().replace("-", "_")
    assert str(err.value) == (
        f"config: (top level): printers: {first!r} and {second!r} would be one name in Home "
        f"Assistant (print_watchdog_{slug}_...): rename one"
    )
    raw["mqtt"] = {"host": "broker", "homeassistant": {"enabled": False}}
    assert [p.name for p in parse_config(raw).printers] == [first, second]
    assert len(parse_config({"printers": raw["printers"]}).printers) == 2  # no MQTT at all


@pytest.mark.parametrize("host", ["broker.local", "192.168.1.5", "::1", "fe80::1"])
def test_mqtt_hosts_that_are_host_names_or_addresses_load(host: str) -> None:
    raw = {"printers": [{"name": "e3", "camera": {"source": "/tmp"}}], "mqtt": {"host": host}}
    assert parse_config(raw).mqtt.host == host


def test_a_trusted_proxy_is_an_address_or_a_network_named_where_it_is_not() -> None:
    """A host name would have to be resolved for every request (and resolves differently
    tomorrow): the one-line error names the key and the value."""
    http = {"trusted_proxies": ["10.0.0.0/8", "::1"], "generate_password": True}
    raw = {"printers": [{"name": "e3"}], "http": http}
    assert parse_config(raw).http.trusted_proxies == ["10.0.0.0/8", "::1"]
    raw["http"] = {**http, "trusted_proxies": ["127.0.0.1", "my-proxy.lan"]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert "http.trusted_proxies" in message and "'my-proxy.lan'" in message, message


def test_a_trusted_proxy_needs_a_dashboard_password() -> None:
    """Through a proxy on this machine every request comes from this machine, which needs no
    login: whoever reached the proxy reached the dashboard."""
    raw = {"printers": [{"name": "e3"}], "http": {"trusted_proxies": ["127.0.0.1"]}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "http.trusted_proxies" in str(err.value) and "password" in str(err.value)


def test_the_dashboards_host_names_are_names_and_need_a_password() -> None:
    """Names are compared with the browser's Host: one written as a URL would never match, and
    the page would refuse its owner with nothing said at the start (and a name with an
    underscore never arrives: the server takes such a Host for none). Without a password the
    page answers to loopback only, so a name there would do nothing."""
    http = {"host_names": ["Printer.LAN.", "Drücker.lan"], "generate_password": True}
    raw = {"printers": [{"name": "e3"}], "http": http}
    # as a browser sends them: a name in another script in its ASCII form
    assert parse_config(raw).http.host_names == ["printer.lan", "xn--drcker-4ya.lan"]
    for wrong in ("http://printer.lan", "printer.lan:8787", "printer lan", "my_printer.lan", ""):
        raw["http"] = {**http, "host_names": [wrong]}
        with pytest.raises(ConfigError) as err:
            parse_config(raw)
        message = str(err.value)
        assert "http.host_names" in message and repr(wrong) in message, message
    raw["http"] = {"host_names": ["printer.lan"]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "http.host_names" in str(err.value) and "password" in str(err.value)


def test_relative_certificate_paths_are_read_from_the_configs_folder(
    tmp_path: Path, monkeypatch, self_signed_cert: tuple[Path, Path]
) -> None:
    """As the secrets' ``*_file`` are: check-config run in /etc/printer-watchdog found
    ``ca_file: camera-ca.pem``; the daemon, whose working folder is /, refused to start."""
    from watchdog.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    shutil.copy(self_signed_cert[0], folder / "camera-ca.pem")
    (folder / "config.yaml").write_text(
        "printers:\n"
        "  - name: e3\n"
        "    camera: {source: 'https://cam.lan/snap.jpg', ca_file: camera-ca.pem}\n"
        "    api: {kind: moonraker, url: 'https://pi.lan', ca_file: camera-ca.pem}\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere, as the daemon is
    printer = load_config(folder / "config.yaml").printers[0]
    assert printer.camera.ca_file == folder / "camera-ca.pem"
    assert printer.api.ca_file == folder / "camera-ca.pem"


@pytest.mark.parametrize("key", ["camera", "api"])
def test_a_ca_file_without_a_pem_certificate_is_refused_naming_the_key(
    tmp_path: Path, key: str
) -> None:
    """A certificate saved as DER (binary), or the wrong file: the key passed, and every
    request then failed as "cannot connect", far from it."""
    der = tmp_path / "camera-ca.crt"
    der.write_bytes(b"0\x82\x03\x1d0\x82\x02\x05\xa0\x03\x02\x01\x02")
    section = (
        {"camera": {"source": "https://cam.lan/snap.jpg", "ca_file": str(der)}}
        if key == "camera"
        else {"api": {"kind": "moonraker", "url": "https://pi.lan", "ca_file": str(der)}}
    )
    with pytest.raises(ConfigError) as err:
        parse_config({"printers": [{"name": "e3", **section}]})
    message = str(err.value)
    assert f"{key}.ca_file" in message and "no certificate in PEM" in message, message
    assert "\n" not in message.strip()


def test_a_warning_about_the_config_is_said_once_however_often_it_is_loaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every settings save on the page loads the config again: a batch of saves logged the
    same "actions_url is set but http.listen is ..." line dozens of times."""
    raw = {
        "http": {"listen": "127.0.0.1:8787"},
        "notify": [{"url": "ntfys://ntfy.sh/printers", "actions_url": "http://127.0.0.1:8787"}],
        "printers": [{"name": "e3"}],
    }
    from watchdog import config

    config._said.clear()  # as in a fresh process (another test may have said it)
    with caplog.at_level("WARNING", "watchdog.config"):
        for _ in range(3):
            parse_config(raw)
    said = [r.getMessage() for r in caplog.records if "actions_url is set" in r.getMessage()]
    assert len(said) == 1 and "through a proxy on this machine" in said[0], said


@pytest.mark.parametrize(
    "source", [0, "/dev/video0", "http://cam.local/?action=snapshot", "rtsp://cam.local/s"]
)
def test_a_live_camera_read_without_a_pause_is_refused_a_recording_is_not(
    source: object, tmp_path
) -> None:
    """``interval_s: 0`` read a live camera and asked the printer's API without a pause:
    thousands of requests a second to an OctoPrint on the same Pi. A folder of frames or a
    video is read as fast as it can be, as replays and tests do."""
    with pytest.raises(ConfigError) as err:
        _config(camera={"source": source, "interval_s": 0})
    message = str(err.value)
    assert "printers.0.camera: interval_s 0 reads a recording" in message, message
    assert "give the seconds between frames" in message and "\n" not in message
    assert _config(camera={"source": source, "interval_s": 0.5}).printers[0].camera.live
    assert not _config(camera={"source": str(tmp_path), "interval_s": 0}).printers[0].camera.live


def test_a_mistyped_key_is_told_the_key_it_is_close_to() -> None:
    """``interval: 5`` was "unknown key", the owner left to find ``interval_s`` in the
    reference; a key close to one of its section's is named."""
    with pytest.raises(ConfigError) as err:
        _config(camera={"interval": 5}, acton="pause")
    assert str(err.value) == (
        "config: printers.0.acton: unknown key (did you mean action?); "
        "printers.0.camera.interval: unknown key (did you mean interval_s?)"
    )


@pytest.mark.parametrize(
    "method", ["scrypt", "pbkdf2", "pbkdf2:sha512", "pbkdf2:sha3_256", "pbkdf2:sha256:260000"]
)
def test_every_password_hash_werkzeug_makes_is_taken_whole(method: str) -> None:
    """A hash cut short by a shell is refused; a whole one of any method werkzeug offers is
    not (``pbkdf2:sha3_256``'s underscore was taken for a cut)."""
    from werkzeug.security import generate_password_hash

    hashed = generate_password_hash("correct horse", method=method)
    config = parse_config({"http": {"password": hashed}, "printers": [{"name": "p1"}]})
    assert config.http.password is not None
    with pytest.raises(ConfigError, match="not a whole one"):
        parse_config(
            {"http": {"password": hashed.rpartition("$")[0]}, "printers": [{"name": "p1"}]}
        )
