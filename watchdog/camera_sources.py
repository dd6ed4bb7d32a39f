"""What kind of camera a ``camera.source`` names, told one way for the config's checks and
for the capture module that opens it (the config cannot import capture: OpenCV is heavy)."""

from __future__ import annotations

import re
from enum import Enum

# a network camera's address given without its scheme (192.168.1.50:8080/?action=snapshot)
_HOST_PORT = re.compile(r"^[\w.-]+:\d+(/|$)")


class SourceKind(Enum):
    """A camera read as it films (a device, a URL), or a recording read to its end."""

    DEVICE = "device"  # a V4L2 device: its index (0) or its path (/dev/video0)
    URL = "url"  # http(s), rtsp(s), rtmp: a network camera
    RECORDING = "recording"  # a folder of frames or a video file

    @property
    def live(self) -> bool:
        return self is not SourceKind.RECORDING


def source_kind(source: int | str) -> SourceKind:
    """The kind of camera ``source`` names."""
    if isinstance(source, int) or source.strip().isdigit() or source.startswith("/dev/"):
        return SourceKind.DEVICE
    if "://" in source:
        return SourceKind.URL
    return SourceKind.RECORDING


def address_without_scheme(source: str) -> bool:
    """Whether ``source``, read as a recording's path, is a camera's address missing its
    ``http://`` (said so, not "no such file")."""
    return bool(_HOST_PORT.match(source))
