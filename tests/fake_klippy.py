"""A stand-in Klippy for the tests: enough of Klipper's API server for the real Moonraker.

Klipper is not on PyPI, so the tests run this instead, on the Unix socket that Moonraker's
``klippy_uds_address`` names. Protocol (Klipper's ``webhooks.py``): one JSON object per
message followed by the byte 0x03, in both directions; requests ``{"id", "method",
"params"}``, replies ``{"id", "result"}`` or ``{"id", "error": {"error", "message"}}``;
status pushed as ``{"method": <response_template method>, "params": {"eventtime",
"status"}}`` to connections that subscribed.

What it models: webhooks ready/shutdown, print_stats standby → printing → paused →
printing → cancelled, started by ``SDCARD_PRINT_FILE`` (the file must exist),
paused/resumed/cancelled by ``pause_resume/*`` or the PAUSE/RESUME/CANCEL_PRINT G-codes.
Like real Klipper, PAUSE does not fail when nothing prints. ``TEST_PAUSE_MACRO PAUSES=0`` (a
command of this stand-in only) stands for a printer.cfg whose PAUSE macro does not pause (it
never calls PAUSE_BASE): PAUSE, through either path, answers "ok" and the print goes on, as
Klipper's webhooks run the PAUSE macro for ``pause_resume/pause`` too; ``PAUSES=1`` mends it.
``TEST_PAUSE_MACRO DELAY=S`` stands for a PAUSE that waits S seconds behind a long command (a
heat-up, a bed mesh) before it pauses; ``DELAY=0`` pauses at once again. ``TEST_RESUME_MACRO
RESUMES=0`` stands for a RESUME macro that refuses without an error (mainsail-config's when
the nozzle is not hot: it only says so): RESUME answers "ok" and the print stays paused;
``RESUMES=1`` mends it. ``emergency_stop`` puts it in
shutdown; ``FIRMWARE_RESTART``/``RESTART`` make it ready again. Its ``extruder`` and
``heater_bed`` take targets from M104/M109/M140/M190 (``S``) and SET_HEATER_TEMPERATURE, and
move towards them at ``HEAT_RATE`` degrees a second (as OctoPrint's virtual printer does).

Run: ``python tests/fake_klippy.py SOCKET --data DIR`` (Moonraker's data folder: G-code
files are looked up in ``DIR/gcodes``); it stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("fake_klippy")

AMBIENT, HEAT_RATE = 22.0, 10.0  # degrees C, degrees C a second

ENDPOINTS = [
    "list_endpoints",
    "info",
    "emergency_stop",
    "register_remote_method",
    "objects/list",
    "objects/query",
    "objects/subscribe",
    "gcode/script",
    "gcode/help",
    "gcode/subscribe_output",
    "gcode/restart",
    "gcode/firmware_restart",
    "pause_resume/pause",
    "pause_resume/resume",
    "pause_resume/cancel",
]


class KlippyError(Exception):
    """An error reply, as Klipper's webhooks send it."""


class FakeKlippy:
    """The printer's state and the request handlers."""

    def __init__(self, gcodes: Path, klipper_path: Path, config_file: Path) -> None:
        self.gcodes, self.klipper_path, self.config_file = gcodes, klipper_path, config_file
        self.resume_macro_resumes = True  # False: a RESUME macro that refuses, saying why
        self.started = 0.0  # when the current job started
        self.pause_macro_pauses = True  # False: a PAUSE macro that forgets PAUSE_BASE
        self.pause_delay_s = 0.0  # a PAUSE queued behind a long command
        self.clients: set[asyncio.StreamWriter] = set()
        # each heater's temperature when its target was last set, and when
        self.heated_from: dict[str, tuple[float, float]] = {}
        self.writers: dict[
            asyncio.StreamWriter, tuple[dict[str, Any], str]
        ] = {}  # subscription, method
        path = str(gcodes)
        self.objects: dict[str, dict[str, Any]] = {
            "webhooks": {"state": "ready", "state_message": "Printer is ready"},
            "print_stats": {
                "filename": "",
                "total_duration": 0.0,
                "print_duration": 0.0,
                "filament_used": 0.0,
                "state": "standby",
                "message": "",
                "info": {"total_layer": None, "current_layer": None},
            },
            "pause_resume": {"is_paused": False},
            "virtual_sdcard": {
                "file_path": None,
                "progress": 0.0,
                "is_active": False,
                "file_position": 0,
                "file_size": 0,
            },
            "display_status": {"progress": 0.0, "message": None},
            "idle_timeout": {"state": "Idle", "printing_time": 0.0},
            "heaters": {
                "available_heaters": ["extruder", "heater_bed"],
                "available_sensors": ["extruder", "heater_bed"],
                "available_monitors": [],
            },
            "extruder": {"temperature": AMBIENT, "target": 0.0, "power": 0.0},
            "heater_bed": {"temperature": AMBIENT, "target": 0.0, "power": 0.0},
            "configfile": {
                "config": {
                    "virtual_sdcard": {"path": path},
                    "pause_resume": {},
                    "display_status": {},
                },
                "settings": {"virtual_sdcard": {"path": path}},
                "save_config_pending": False,
            },
        }

    # ---- state changes, pushed to subscribers

    def update(self, obj: str, **fields: Any) -> None:
        self.objects[obj].update(fields)
        logger.info("%s <- %s", obj, fields)
        for writer, (sub, method) in list(self.writers.items()):
            if obj in sub:
                wanted = sub[obj]
                diff = {k: v for k, v in fields.items() if wanted is None or k in wanted}
                if diff:
                    send(
                        writer,
                        {"method": method, "params": {"eventtime": now(), "status": {obj: diff}}},
                    )

    def select(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for obj, fields in spec.items():
            if obj in self.objects:
                values = self.objects[obj]
                if obj == "print_stats" and values["state"] in ("printing", "paused"):
                    # Klipper counts the job's time from its start, pauses included (and
                    # without them in print_duration: here the same, pauses are not timed)
                    since = time.time() - self.started
                    values = {**values, "total_duration": since, "print_duration": since}
                if obj in self.heated_from:
                    values = {**values, "temperature": self.temperature(obj)}
                out[obj] = (
                    dict(values)
                    if fields is None
                    else {k: values[k] for k in fields if k in values}
                )
        return out

    def temperature(self, heater: str) -> float:
        """The heater's temperature now, on its way to its target (to ambient when off)."""
        start, since = self.heated_from.get(heater, (AMBIENT, time.time()))
        goal = self.objects[heater]["target"] or AMBIENT
        moved = HEAT_RATE * (time.time() - since)
        return min(goal, start + moved) if goal >= start else max(goal, start - moved)

    def set_target(self, heater: str, target: float) -> None:
        self.heated_from[heater] = (self.temperature(heater), time.time())
        self.update(heater, target=target)

    def start_print(self, filename: str) -> None:
        if self.objects["print_stats"]["state"] in ("printing", "paused"):
            raise KlippyError("SD busy")
        file = self.gcodes / filename
        if not file.is_file():
            raise KlippyError(f"Unable to open file {filename}")
        self.update(
            "virtual_sdcard", file_path=str(file), is_active=True, file_size=file.stat().st_size
        )
        self.started = time.time()
        self.update("print_stats", state="printing", filename=filename, message="")
        self.update("idle_timeout", state="Printing")

    def pause(self) -> None:
        if not self.pause_macro_pauses:
            return
        if self.pause_delay_s:
            asyncio.get_running_loop().call_later(self.pause_delay_s, self._pause_now)
            return
        self._pause_now()

    def _pause_now(self) -> None:
        if self.objects["pause_resume"]["is_paused"]:
            return  # Klipper: "Print already paused", not an error
        self.update("pause_resume", is_paused=True)
        if self.objects["print_stats"]["state"] == "printing":
            self.update("virtual_sdcard", is_active=False)
            self.update("print_stats", state="paused")

    def resume(self) -> None:
        if not self.objects["pause_resume"]["is_paused"]:
            raise KlippyError("Print is not paused, resume aborted")
        if not self.resume_macro_resumes:
            return
        self.update("pause_resume", is_paused=False)
        if self.objects["print_stats"]["state"] == "paused":
            self.update("virtual_sdcard", is_active=True)
            self.update("print_stats", state="printing")

    def cancel(self) -> None:
        self.update("pause_resume", is_paused=False)
        if self.objects["print_stats"]["state"] in ("printing", "paused"):
            self.update("virtual_sdcard", is_active=False, file_path=None)
            self.update("print_stats", state="cancelled")
            self.update("idle_timeout", state="Ready")

    def shutdown(self, message: str) -> None:
        self.update("webhooks", state="shutdown", state_message=message)
        if self.objects["print_stats"]["state"] in ("printing", "paused"):
            self.update("print_stats", state="error", message=message)

    def restart(self) -> None:
        self.update("webhooks", state="ready", state_message="Printer is ready")
        self.update("pause_resume", is_paused=False)
        if self.objects["print_stats"]["state"] != "standby":
            self.update("print_stats", state="standby", filename="", message="")

    def gcode(self, script: str) -> None:
        for line in script.splitlines():
            words = line.strip().split()
            if not words:
                continue
            cmd = words[0].upper()
            if self.objects["webhooks"]["state"] != "ready" and cmd not in (
                "FIRMWARE_RESTART",
                "RESTART",
            ):
                raise KlippyError(self.objects["webhooks"]["state_message"])
            if cmd == "SDCARD_PRINT_FILE":
                m = re.search(r'FILENAME=(?:"((?:[^"\\]|\\.)*)"|(\S+))', line, re.IGNORECASE)
                if not m:
                    raise KlippyError("Error on 'SDCARD_PRINT_FILE': missing FILENAME")
                self.start_print((m.group(1) or m.group(2)).replace('\\"', '"'))
            elif cmd in ("M104", "M109", "M140", "M190"):
                heater = "heater_bed" if cmd in ("M140", "M190") else "extruder"
                target = [w[1:] for w in words[1:] if w.upper().startswith("S")]
                self.set_target(heater, float(target[0]) if target else 0.0)
            elif cmd == "SET_HEATER_TEMPERATURE":
                heater_m = re.search(r"HEATER=(\S+)", line, re.IGNORECASE)
                target_m = re.search(r"TARGET=([0-9.]+)", line, re.IGNORECASE)
                if not heater_m or heater_m.group(1) not in ("extruder", "heater_bed"):
                    raise KlippyError("Error on 'SET_HEATER_TEMPERATURE': unknown heater")
                self.set_target(heater_m.group(1), float(target_m.group(1)) if target_m else 0.0)
            elif cmd == "PAUSE":
                self.pause()
            elif cmd == "TEST_PAUSE_MACRO":
                m = re.search(r"DELAY=([0-9.]+)", line, re.IGNORECASE)
                if m:
                    self.pause_delay_s = float(m.group(1))
                else:
                    self.pause_macro_pauses = "PAUSES=0" not in line.upper()
            elif cmd == "TEST_RESUME_MACRO":
                self.resume_macro_resumes = "RESUMES=0" not in line.upper()
            elif cmd == "RESUME":
                self.resume()
            elif cmd == "CANCEL_PRINT":
                self.cancel()
            elif cmd in ("FIRMWARE_RESTART", "RESTART"):
                self.restart()
            elif cmd == "G1" and any(
                w.upper().startswith("X") and abs(float(w[1:])) > 1000 for w in words[1:]
            ):
                # stands for such a line in the file being printed: Klipper aborts the print
                # (print_stats "error" with the message) and stays ready
                message = f"Move out of range: {words[1][1:]}.000 0.000 0.000 [0.000]"
                if self.objects["print_stats"]["state"] in ("printing", "paused"):
                    self.update("virtual_sdcard", is_active=False)
                    self.update("print_stats", state="error", message=message)
                raise KlippyError(message)

    # ---- requests

    def handle(self, writer: asyncio.StreamWriter, method: str, params: dict[str, Any]) -> Any:
        if method == "info":
            hooks = self.objects["webhooks"]
            return {
                "state": hooks["state"],
                "state_message": hooks["state_message"],
                "hostname": "fake-klippy",
                "software_version": "v0.12.0-fake",
                "cpu_info": "test",
                "process_id": os.getpid(),
                "user_id": os.getuid(),
                "group_id": os.getgid(),
                # Outside the gcodes folder, or Moonraker refuses uploads there.
                "klipper_path": str(self.klipper_path),
                "python_path": sys.executable,
                "log_file": "",
                "config_file": str(self.config_file),
            }
        if method == "list_endpoints":
            return {"endpoints": ENDPOINTS}
        if method == "objects/list":
            return {"objects": list(self.objects)}
        if method == "objects/query":
            return {"eventtime": now(), "status": self.select(params.get("objects") or {})}
        if method == "objects/subscribe":
            template = (params.get("response_template") or {}).get(
                "method", "process_status_update"
            )
            spec = params.get("objects") or {}
            self.writers[writer] = (spec, template)  # each subscribe replaces the last
            return {"eventtime": now(), "status": self.select(spec)}
        if method in ("gcode/subscribe_output", "register_remote_method", "gcode/help"):
            return {}
        if method == "emergency_stop":
            self.shutdown("Shutdown due to webhooks request")
            return {}
        if method in ("gcode/restart", "gcode/firmware_restart"):
            self.restart()
            return {}
        if method == "gcode/script":
            self.gcode(str(params.get("script", "")))
            return {}
        if method.startswith("pause_resume/"):
            if self.objects["webhooks"]["state"] != "ready":
                raise KlippyError(self.objects["webhooks"]["state_message"])
            {"pause": self.pause, "resume": self.resume, "cancel": self.cancel}[
                method.split("/")[1]
            ]()
            return {}
        raise KlippyError(f"No registered endpoint '{method}'")

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        logger.info("client connected")
        self.clients.add(writer)
        try:
            while True:
                try:
                    data = await reader.readuntil(b"\x03")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                msg = json.loads(data[:-1])
                method, params = msg.get("method", ""), msg.get("params") or {}
                logger.info("request %s %s", method, json.dumps(params)[:200])
                try:
                    reply: dict[str, Any] = {
                        "id": msg.get("id"),
                        "result": self.handle(writer, method, params),
                    }
                except KlippyError as exc:
                    reply = {
                        "id": msg.get("id"),
                        "error": {"error": "WebRequestError", "message": str(exc)},
                    }
                send(writer, reply)
                await writer.drain()
        finally:
            self.writers.pop(writer, None)
            self.clients.discard(writer)
            writer.close()
            logger.info("client disconnected")


def now() -> float:
    return time.monotonic()


def send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    writer.write(json.dumps(msg).encode() + b"\x03")


async def main(sock: Path, gcodes: Path, data: Path) -> None:
    # Moonraker looks for <klipper_path>/config and docs, and for the printer.cfg it is given.
    klipper_path, config_file = data / "klipper", data / "config" / "printer.cfg"
    for sub in ("config", "docs"):
        (klipper_path / sub).mkdir(parents=True, exist_ok=True)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.touch()
    klippy = FakeKlippy(gcodes, klipper_path, config_file)
    sock.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(
        klippy.serve_client, path=str(sock), limit=20 * 1024 * 1024
    )
    logger.info("listening on %s", sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        for writer in list(klippy.clients):  # so that closing the server does not wait on them
            writer.close()
    sock.unlink(missing_ok=True)
    logger.info("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", type=Path)
    parser.add_argument(
        "--data", type=Path, required=True, help="printer data folder (Moonraker's -d)"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    asyncio.run(main(args.socket, args.data / "gcodes", args.data))
