"""How Home Assistant names a printer's entities: after the device's name (MQTT discovery),
made lower case with every run of other characters one ``_``. The config refuses printers
that would get one name; discovery names the device."""

from __future__ import annotations

import re


def device_name(printer: str) -> str:
    """The Home Assistant device of one printer's entities."""
    return f"Print watchdog {printer}"


def entity_slug(printer: str) -> str:
    """What Home Assistant makes of the device name in its entity ids
    (``binary_sensor.<slug>_print_failure``)."""
    return re.sub(r"[^a-z0-9]+", "_", device_name(printer).lower()).strip("_")
