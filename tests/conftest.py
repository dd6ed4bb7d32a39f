"""Shared fixtures. Real servers live in tests/plugins/ (one plugin per kind of server)."""

pytest_plugins = [
    "tests.plugins.mosquitto",
    "tests.plugins.printers",
    "tests.plugins.camera",
    "tests.plugins.rtsp",
    "tests.plugins.models",
    "tests.plugins.receivers",
]
