"""MQTT communicator: state, scores, heatmaps and alerts out; owner commands in.

Topics (``<prefix>`` is ``mqtt.topic_prefix``), after Frigate's conventions:

- ``<prefix>/available/<client id>``: ``online``/``offline``, retained; ``offline`` is the
  last will (one topic per daemon: several may share a prefix).
- ``<prefix>/<printer>/state``: JSON, retained. ``<prefix>/<printer>/enabled``: ON/OFF, retained.
- ``<prefix>/<printer>/score``: the score of the latest frame, retained.
- ``<prefix>/<printer>/alert``: JSON with the ``incident`` id.
- ``<prefix>/<printer>/heatmap``: raw JPEG bytes, retained.
- ``<prefix>/<printer>/answer``: JSON, retained: what became of the latest command taken on
  the command topics (its ``text`` says it in the owner's words, ``ok`` whether it was done).
- Commands in (``watchdog.comms.commands``): ``enabled/set``, ``feedback`` and ``command``.
  Each becomes a ``watchdog.control.Command`` handed to the dispatcher. Anything else is
  logged and ignored, never executed. A *retained* command is never executed either (it would
  come back at every reconnect): it is logged and cleared from the broker.

No alert is lost: an alert is written to the outbox (``watchdog.comms.outbox``, channel
``mqtt``) first and published at QoS 1 from there; the entry goes when the broker's PUBACK
arrives. paho resends unacknowledged messages after a reconnect, and entries still in the
outbox are published again by the next ``start()`` (after a daemon restart).

The connection itself is ``watchdog.comms.transport``; Home Assistant discovery is
``watchdog.comms.discovery``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from watchdog.comms.command_queue import PrinterCommands, Put
from watchdog.comms.commands import COMMAND_TOPICS, CommandError, command_kind, parse_command
from watchdog.comms.discovery import Discovery, discovery_configs
from watchdog.comms.outbox import MQTT, Entry, Outbox
from watchdog.comms.transport import SHORT_LIVED_S, MqttTransport, topic_text
from watchdog.config import PRINTER_NAME, MqttConfig, plain_topic
from watchdog.control import Answered, Command, CommandResult, Dispatcher, answer_text
from watchdog.durable import (
    fsync_dir,
    read_json,
    set_aside_said,
    why_unreadable,
    write_durably,
)
from watchdog.incidents import (
    Incident,
    IncidentStore,
    ThrottledLog,
    alert_moment,
    shown,
    to_json,
)
from watchdog.kept_answers import KeptAnswers

logger = logging.getLogger(__name__)

# a printer's retained topics under <prefix>/<printer>/
RETAINED = ("state", "enabled", "heatmap", "answer", "score")
# an alert the broker refused is sent again this often while connected (said once a minute)
REFUSED_RETRY_S = 300.0
# how long a removed printer's retained entity config is waited for, to tell whose it is
OWNER_WAIT_S = 3.0
# clears of retained commands on their way at once: a flood of them (tens of thousands a
# second, or found at the connection) queued a clear each in the MQTT client, its memory grown
# by 120 MB for good and every alert behind them by seconds. Past it, the topic waits in a
# backlog (its name only) and is cleared as the earlier clears land; past the backlog, it is
# left on the broker, given again and cleared at the next connection
MAX_CLEARS_IN_FLIGHT = 256
MAX_CLEAR_BACKLOG = 100_000


class MqttCommunicator:
    """Publishes what the watchers see and keeps every alert until the broker has it.

    With MQTT disabled (empty host) nothing is published and nothing is queued.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        printers: list[str],
        outbox: Outbox,
        dispatcher: Dispatcher | None = None,
        *,
        reconnect_delay: tuple[float, float] = (1, 30),
        throttle: ThrottledLog | None = None,
        published: Path | None = None,
        without_api: Collection[str] = (),
        answered: Answered | None = None,
        answers: Path | None = None,
    ) -> None:
        """``published``: a file remembering which printers were last published, so that one
        removed from the config while the daemon was stopped is taken off the broker;
        ``without_api``: printers whose Home Assistant device gets no printer buttons;
        ``answered``: told each answer published (the page shows it too); ``answers``: a file
        keeping each printer's last answer, sent again at the next start."""
        self.cfg = cfg
        self.prefix = cfg.topic_prefix
        self.printers = list(printers)
        self._published = published
        self.outbox = outbox
        self.dispatcher = dispatcher
        self._answered = answered
        self._kept = None if answers is None else KeptAnswers(answers)
        self._throttle = throttle or ThrottledLog(60.0)
        self.discovery = Discovery(
            cfg,
            self.printers,
            lambda t, p: self._publish(t, p, retain=True),
            without_api=without_api,
        )
        self.transport = MqttTransport(
            cfg,
            self._on_message,
            self._on_ack,
            self._on_connected,
            self._subscriptions,
            reconnect_delay=reconnect_delay,
            throttle=self._throttle,
            on_lost=self._on_lost,
        )
        self._lock = threading.Condition()
        self._started = False
        # connected, as our callbacks saw it: an alert raised otherwise waits in _unsent, not
        # in paho's queue, so that the connection sends it only if it is not too old
        self._online = False
        self._born: dict[str, float] = {}  # alert id → monotonic time it was raised
        self._inflight: dict[int, Entry] = {}  # mid → alert waiting for its PUBACK
        self._unsent: dict[str, Entry] = {}  # alerts with no client yet (not started / stopped)
        # PUBACKs that beat publish(): "" for a message taken, the broker's reason if refused
        self._early_acks: OrderedDict[int, str] = OrderedDict()
        # alerts the broker refused: sent again at connect, once a later alert is taken, and
        # every REFUSED_RETRY_S (its ACL edited and reloaded keeps us connected)
        self._refused: dict[str, Entry] = {}
        self._retry: threading.Timer | None = None
        self._clearing = 0  # acknowledged alerts whose outbox entry is not removed yet
        self._retained: dict[str, bytes] = {}  # latest state/heatmap/enabled, re-sent on connect
        self._connections = 0  # counted at each connection: what a deferred discovery is for
        self._heatmap_shown: dict[str, float] = {}  # printer → when its latest heatmap was made
        # retained values sent and not acknowledged yet, by message id: paho sends a value left
        # in flight by a lost connection again after the connect, behind the newer one the
        # connect sent; its PUBACK, last, says that the broker now keeps the older value
        self._unacked_retained: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        # retained commands' clears on their way, by message id; topics waiting to be cleared
        # (retained again meanwhile, or past MAX_CLEARS_IN_FLIGHT), oldest first
        self._clears: dict[int, str] = {}
        self._clear_backlog: OrderedDict[str, None] = OrderedDict()
        # topics emptied (a removed printer's, its entities'): such a value landing after the
        # emptying, sent before a lost connection, is emptied again
        self._emptied: OrderedDict[str, None] = OrderedDict()
        # removed printers whose entities are taken off the broker once their retained config
        # shows them still this daemon's: its topic → (prefix, discovery prefix, printer)
        self._owner_checks: dict[str, tuple[str, str, str]] = {}
        self._ours: set[str] = set()  # availability topics this daemon has announced entities with
        # Commands are carried out by their own thread: the daemon answers a command when the
        # printer has (up to a minute against a slow API), and paho's network thread, which
        # hands messages over, must keep pinging the broker meanwhile or the session drops.
        self._commands: PrinterCommands | None = None  # while started, with a dispatcher

    # ----------------------------------------------------------------- lifecycle

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def connected(self) -> bool:
        return self.transport.connected

    @property
    def address(self) -> str:
        return self.transport.address

    def start(self, legacy: IncidentStore | None = None) -> None:
        """Connect in the background (the broker may be down) and queue alerts left pending.

        ``legacy``: incidents with the ``pending`` marker of earlier versions move to the outbox.
        """
        if not self.enabled or self._started:
            return
        client = self.transport.make_client()
        if legacy is not None:
            self._adopt_legacy(legacy)
        with self._lock:
            self._started = True
            self.transport.client = (
                client  # from here on send_alert publishes on this client itself
            )
            unsent = list(self._unsent.values())
            self._unsent.clear()
        queued = {e.id for e in unsent}
        pending = [e for e in self.outbox.pending(MQTT) if e.id not in queued]
        backlog = unsent + [e for e in pending if e.printer in self.printers]
        now = time.time()
        with self._lock:
            for entry in unsent + pending:  # an earlier run's: aged by the wall clock until now
                self._born.setdefault(entry.id, time.monotonic() - max(0.0, now - entry.born))
            removed = [e for e in pending if e.printer not in self.printers]
        self._keep_or_drop_removed(removed)
        if backlog:
            logger.info(
                "%d alert(s) not yet delivered will be sent when the broker answers", len(backlog)
            )
        for entry in sorted(backlog, key=lambda e: e.id):
            self._publish_alert(
                entry,
                "left by an earlier run: the broker away or refusing it, or a power cut before it was queued",
            )
        if self.dispatcher is not None:
            self._commands = PrinterCommands(self.dispatcher.dispatch, self.publish_answer)
        self._restore_answers()
        self.transport.start(client)

    def _keep_or_drop_removed(self, removed: list[Entry]) -> None:
        """Alerts left for a printer taken out of the config or renamed: kept a while only
        (sent if it is back at a later start), each drop and what is kept said."""
        with self._lock:
            stale = [e for e in removed if self._past_age(self._born.pop(e.id))]
        for entry in stale:
            self._said_too_old(entry, "its printer is no longer in the config")
        if kept := sorted({e.printer for e in removed} - {e.printer for e in stale}):
            logger.warning(
                "MQTT: alert(s) of %s, no longer in the config, are not sent; kept for "
                "mqtt.alert_max_age_h=%g h, sent if the printer is back at a later start",
                ", ".join(kept),
                self.cfg.alert_max_age_h,
            )

    def _restore_answers(self) -> None:
        """Each printer's last answer, sent at the connection: one the last run ended while
        the broker was away (Home Assistant's Last command kept "under way" for good), or one
        a broker without persistence forgot. One still under way was cut off (a power cut)."""
        if self._kept is None:
            return
        for printer, answer in self._kept.load().items():
            topic = f"{self.prefix}/{printer}/answer"
            with self._lock:
                newer = topic in self._retained
            if printer in self.printers and not newer:
                self._retain(printer, "answer", to_json(answer))

    def _adopt_legacy(self, store: IncidentStore) -> None:
        have = {e.id for e in self.outbox.pending(MQTT)}
        for incident in store.pending(self.printers):
            if incident.id not in have:
                # aged from the alert's own time: one saved days ago (a draft a power cut
                # left) is dropped as too old, not published to Home Assistant as news
                entry = self.outbox.put(
                    MQTT,
                    incident.printer,
                    shown(incident.alert),
                    entry_id=incident.id,
                    created=alert_moment(incident.alert),
                )
                if entry.path is None:
                    continue  # stays marked; tried again at the next start
            store.delivered(incident)

    def stop(self, timeout: float = 3.0, for_good: bool = False) -> None:
        """Let in-flight alerts finish briefly, publish offline (``for_good``: clear the
        availability instead), disconnect, join the thread."""
        if not self._started:
            return
        # ``timeout`` for all the waits together (a broker that stopped answering made each
        # take all of it: past systemd's stop timeout with the rest of the stop)
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        if self._commands is not None:
            # the watchers have stopped: nobody would carry out those still waiting. Those
            # under way are waited for while the broker is still there: one whose end came
            # as the watchers stopped tells it from its own thread (Home Assistant's Last
            # command stayed "under way" for good when that came after the disconnection)
            dropped = self._commands.close(remaining())
            if dropped:
                logger.warning("%d MQTT command(s) not carried out: the watchdog stopped", dropped)
        if self.connected:
            with self._lock:  # removed printers still being told whose (the demo's end)
                self._lock.wait_for(lambda: not self._owner_checks, min(OWNER_WAIT_S, remaining()))
            self.flush(remaining())
        self.transport.stop(max(0.5, remaining()), for_good)
        # kept, closed, until the connection is gone: a command that comes meanwhile is
        # answered "not carried out" (it was logged as taken and never answered)
        self._commands = None
        with self._lock:
            self._started = False
            self._online = False
            left = [*self._inflight.values(), *self._refused.values(), *self._unsent.values()]
            self._inflight.clear()
            self._refused.clear()
            self._unsent.clear()
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            self._early_acks.clear()
            self._unacked_retained.clear()  # a new client numbers its messages from 1
            self._clears.clear()
            self._clear_backlog.clear()
            lost = [e for e in left if e.path is None]
            for entry in lost:  # a later start() on this object still sends them
                self._unsent[entry.id] = entry
        if left:
            logger.log(
                logging.ERROR if lost else logging.WARNING,
                "MQTT stopped with %d alert(s) undelivered: %d saved in %s (sent at the next start), "
                "%d only in memory (lost if the daemon exits)",
                len(left),
                len(left) - len(lost),
                self.outbox.root,
                len(lost),
            )

    def undelivered(self) -> int:
        """Alerts raised or found pending that the broker has not acknowledged yet."""
        with self._lock:
            return len(self._inflight) + len(self._unsent) + len(self._refused)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every alert is acknowledged; True if so."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._inflight and not self._unsent and not self._clearing, timeout
            )

    # ----------------------------------------------------------------- callbacks (paho's thread)

    def _subscriptions(self) -> list[str]:
        topics = [f"{self.prefix}/{t}" for t in COMMAND_TOPICS]
        if self.discovery.enabled:
            topics += self.discovery.status_topics
        return topics

    def _on_lost(self) -> None:
        with self._lock:
            self._online = False

    def _on_connected(self) -> None:
        self._drop_inflight_too_old()
        with self._lock:
            self._online = True
            unsent = sorted(self._unsent.values(), key=lambda e: e.id)
            self._unsent.clear()
            waiting = len(self._inflight) + len(self._refused) + len(unsent)
            retained = list(self._retained.items())
        churning = self.transport.churning
        logger.log(
            logging.DEBUG if churning and not waiting else logging.INFO,
            "MQTT connected to %s%s",
            self.address,
            f"; sending {waiting} undelivered alert(s)" if waiting else "",
        )
        try:
            self._forget_removed()
        except Exception:  # noqa: BLE001 - the alerts waiting for this connection go out still
            logger.exception("MQTT: taking removed printers off %s failed", self.address)
        with self._lock:
            self._connections += 1
            connection = self._connections
        if self.discovery.enabled and churning:
            # while the broker keeps dropping us, Home Assistant is sent its entities once a
            # connection has lasted, not at each (a broker that restarted has lost them)
            later = threading.Timer(SHORT_LIVED_S, self._discover_if_connected, (connection,))
            later.daemon = True
            later.start()
        elif self.discovery.enabled:
            self._after_clearing(self.discovery.publish_all)
        for topic, payload in retained:
            self._publish(topic, payload, retain=True)
        for entry in unsent:  # raised while the broker was away
            self._publish_alert(entry, f"the broker {self.address} was away")
        self._retry_refused()  # the broker's mind may have changed (its ACL edited)

    def _discover_if_connected(self, connection: int) -> None:
        """Home Assistant's entities, sent where ``connection`` still holds (a timer's thread)."""
        with self._lock:
            current = self._connections
        if current == connection and self.connected:
            self.discovery.publish_all()

    def set_printers(self, printers: list[str], without_api: Collection[str] = ()) -> None:
        """A reload changed the printers: commands for the added ones are taken, their Home
        Assistant entities appear, the removed ones' are taken off the broker, and a printer
        that gained or lost its API gains or loses its printer buttons."""
        removed = [p for p in self.printers if p not in printers]
        self.printers = list(printers)
        if not self.enabled:
            return
        with self._lock:
            for printer in removed:
                for name in RETAINED:
                    self._retained.pop(f"{self.prefix}/{printer}/{name}", None)
        connected = self.connected
        changed = self.discovery.set_printers(self.printers, without_api)
        if connected:
            self._clear(
                self.prefix,
                self.cfg.homeassistant.discovery_prefix,
                removed,
                self.discovery.enabled,
            )
            if changed:
                self._after_clearing(lambda: self.discovery.publish_printers(changed))
            if self.connected:  # else the next connect clears them, from the list still kept
                self._remember()

    def _removing_entities(self) -> bool:
        """Whether removed printers' entity configs are being taken off the broker."""
        with self._lock:
            return bool(self._owner_checks)

    def _after_clearing(self, publish: Callable[[], None]) -> None:
        """``publish`` (entity configs) once the removed printers' configs are off the broker.
        Home Assistant names an entity after its device: a printer renamed by case, or a new
        topic prefix, announced before the old entities went found their ids taken, and got
        '_2' ones for good (automations and dashboards on the old ids broken)."""
        if not self._removing_entities():
            publish()
            return

        def when_cleared() -> None:
            with self._lock:
                self._lock.wait_for(lambda: not self._owner_checks, OWNER_WAIT_S + 1.0)
            if self.connected:
                publish()

        threading.Thread(target=when_cleared, name="mqtt-announce", daemon=True).start()

    @staticmethod
    def _set_aside_damaged(path: Path, exc: Exception) -> None:
        """The record of the printers announced, damaged: kept aside (it is written anew),
        what it named readable from it, and the owner told what it may leave behind."""
        logger.warning(
            "%s: damaged (%s), %s: a printer removed from the config since it was written "
            "may stay in Home Assistant; delete its device there by hand",
            path,
            why_unreadable(exc),
            set_aside_said(path),
        )

    def _forget_removed(self) -> None:
        """Take off the broker what was published for printers no longer in the config (a
        removed printer's device stayed in Home Assistant, shown available, its failure on)."""
        if self._published is None:
            return
        discovered = False
        try:
            last = read_json(self._published)
            if not isinstance(last["topic_prefix"], str) or not isinstance(
                last["discovery_prefix"], str
            ):
                raise TypeError("its prefixes are not text")
            prefix = plain_topic(last["topic_prefix"])
            discovery_prefix = plain_topic(last["discovery_prefix"])
            # a name the config would refuse is no printer of ours (a wildcard in it was
            # refused by the MQTT client, and every connection's setup failed on it)
            printers = [
                p for p in last["printers"] if isinstance(p, str) and PRINTER_NAME.fullmatch(p)
            ]
            discovered = last.get("discovery", True) is not False  # older records: the default
            if "discovery" not in last:
                # written by a version whose availability topic was one per prefix: its last
                # retained word there would stay for good, read by entities set up by hand
                self._publish(f"{prefix}/available", b"", retain=True)
            self._forget_availability(last)
        except FileNotFoundError:
            printers = []
        except OSError as exc:
            logger.warning("%s: unreadable, not used (%s)", self._published, why_unreadable(exc))
            printers = []
        except (ValueError, KeyError, TypeError) as exc:
            self._set_aside_damaged(self._published, exc)
            printers = []
        gone = [
            p
            for p in printers
            if p not in self.printers
            or (prefix, discovery_prefix) != (self.prefix, self.cfg.homeassistant.discovery_prefix)
        ]
        if gone:
            self._clear(prefix, discovery_prefix, gone, discovered or self.discovery.enabled)
        if discovered and not self.discovery.enabled:
            self._forget_discovered([p for p in printers if p not in gone])
        self._remember()

    def _forget_discovered(self, kept: list[str]) -> None:
        """Discovery turned off (to set the entities up by hand): the discovered ones go."""
        if not kept:
            return
        for printer in kept:
            for topic in discovery_configs(self.cfg, printer):
                self._publish(topic, b"", retain=True)
        logger.info(
            "MQTT: Home Assistant discovery is off; the entities it made are removed (%s)",
            ", ".join(kept),
        )

    def _clear(
        self, prefix: str, discovery_prefix: str, printers: list[str], configs: bool
    ) -> None:
        """These printers (removed) taken off the broker, each once its retained entity config
        shows it this daemon's. In a farm sharing one prefix, a printer moved to another host
        and then taken out of this one's config had its new host's entities deleted in Home
        Assistant (their names and areas with them): another daemon's are left to it."""
        if not printers:
            return
        if not configs:  # no entity config of ours to tell whose it is
            self._clear_now(prefix, discovery_prefix, printers)
            return
        cfg = self._cfg_of(prefix, discovery_prefix)
        checks = {_owner_topic(cfg, p): (prefix, discovery_prefix, p) for p in printers}
        client = self.transport.client
        with self._lock:
            self._owner_checks.update(checks)
            self._ours.add(self.transport.availability_topic)
        if client is not None:
            client.subscribe([(t, 1) for t in checks])  # its retained config comes at once
        later = threading.Timer(OWNER_WAIT_S, self._no_owner_said, (list(checks),))
        later.daemon = True
        later.start()

    def _on_owner_config(self, topic: str, payload: bytes) -> None:
        """A removed printer's retained entity config: taken off the broker if this daemon
        announced it, left alone if another does now (paho's thread)."""
        with self._lock:
            check = self._owner_checks.get(topic)
            ours = set(self._ours)
        if check is None:
            return
        try:
            self._owner_config(topic, payload, check, ours)
        finally:
            with self._lock:  # done only now: stop() waits for the last one's removal
                self._owner_checks.pop(topic, None)
                self._lock.notify_all()

    def _owner_config(
        self, topic: str, payload: bytes, check: tuple[str, str, str], ours: set[str]
    ) -> None:
        client = self.transport.client
        if client is not None:
            client.unsubscribe(topic)
        prefix, discovery_prefix, printer = check
        try:
            owner = json.loads(payload).get("availability_topic") if payload else None
        except (ValueError, AttributeError):
            owner = None
        if isinstance(owner, str) and owner not in ours:
            logger.info(
                "MQTT: %s is no longer in this watchdog's config, and another watchdog (%s) "
                "announces it now: its entities are left to it",
                printer,
                owner[:200],
            )
            return
        self._clear_now(prefix, discovery_prefix, [printer])

    def _no_owner_said(self, topics: list[str]) -> None:
        """No retained entity config came for these (none there): their retained values go."""
        for topic in topics:
            self._on_owner_config(topic, b"")

    def _cfg_of(self, prefix: str, discovery_prefix: str) -> MqttConfig:
        return self.cfg.model_copy(
            update={
                "topic_prefix": prefix,
                "homeassistant": self.cfg.homeassistant.model_copy(
                    update={"discovery_prefix": discovery_prefix}
                ),
            }
        )

    def _clear_now(self, prefix: str, discovery_prefix: str, printers: list[str]) -> None:
        """Empty retained messages on every retained topic of these printers (removed)."""
        cfg = self._cfg_of(prefix, discovery_prefix)
        for printer in printers:
            # the entities first: an entity still there when its state is emptied reads the
            # empty state as its value (Home Assistant logs a template error for each)
            topics = list(discovery_configs(cfg, printer))
            if prefix != self.prefix or printer not in self.printers:
                # (only its entities moved, to a new discovery prefix: its values are live)
                topics += [f"{prefix}/{printer}/{name}" for name in RETAINED]
            for topic in topics:
                self._publish(topic, b"", retain=True)
        logger.info("MQTT: removed printer(s) %s taken off the broker", ", ".join(printers))

    def _forget_availability(self, last: dict[str, Any]) -> None:
        """Clear the availability topic an earlier start used, when this one differs (a new
        client id): its last retained word would stay there for good."""
        old = last.get("available")
        if isinstance(old, str) and old:
            with self._lock:
                self._ours.add(old)  # the entities it announced are this daemon's still
        # a record from before it kept the topic is left alone: the old default's topic may
        # be another daemon's of the same host name, not upgraded yet, still in use
        if isinstance(old, str) and old and old != self.transport.availability_topic:
            self._publish(old, b"", retain=True)

    def _remember(self) -> None:
        if self._published is None:
            return
        record = {
            "topic_prefix": self.prefix,
            "discovery_prefix": self.cfg.homeassistant.discovery_prefix,
            "discovery": self.discovery.enabled,
            "printers": self.printers,
            "available": self.transport.availability_topic,
        }
        try:
            self._published.parent.mkdir(parents=True, exist_ok=True)
            # a reload (main thread) and a connect (paho's) may both write it: a file each
            tmp = self._published.with_name(f".{self._published.name}.{threading.get_ident()}.tmp")
            # on the card before it replaces the old one: found empty after a power cut, it
            # left every printer removed since in Home Assistant for good
            write_durably(tmp, json.dumps(record).encode())
            tmp.replace(self._published)
            fsync_dir(self._published.parent)
        except OSError as exc:
            logger.warning("%s: cannot write (%s)", self._published, exc)

    def _on_ack(self, mid: int, refused: str = "") -> None:
        self._retained_landed(mid)
        self._clear_landed(mid)
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                self._early_acks[mid] = refused
                while len(self._early_acks) > 256:
                    self._early_acks.popitem(last=False)
            elif not refused:
                self._clearing += 1  # flush() waits until _delivered has removed the entry
        if entry is None:
            if refused:  # a state, picture or discovery message: said, not kept
                self._say_refused("a state, picture or Home Assistant discovery message", refused)
        elif refused:
            self._refused_alert(entry, refused)
        else:
            self._delivered(entry)

    def _refused_alert(self, entry: Entry, why: str) -> None:
        """The broker refused the alert: it stays in the outbox, and is sent again at the next
        connection (or start), once the broker takes a later alert, or after REFUSED_RETRY_S;
        it is not delivered, whatever its PUBACK arrived as."""
        with self._lock:
            self._refused[entry.id] = entry
            self._lock.notify_all()
            if self._retry is None:
                self._retry = threading.Timer(REFUSED_RETRY_S, self._retry_refused, (True,))
                self._retry.daemon = True
                self._retry.start()
        # its own line, whatever state messages the broker refuses every frame (an alert's
        # refusal was one of "47 more like this")
        self._say_refused(f"alert {entry.id} of {entry.printer}", why, key=f"refused:{entry.id}")

    def _retry_refused(self, timer: bool = False) -> None:
        """The refused alerts sent again while connected (a timer's thread, or paho's); not
        connected, the next connection sends them."""
        connected = self.connected  # the transport's lock is never taken inside ours
        with self._lock:
            if timer:
                self._retry = None
            if not self._refused or not self._started or not connected:
                return
            refused = list(self._refused.values())
            self._refused.clear()
        for entry in refused:  # the broker's mind may have changed (its ACL edited)
            self._publish_alert(entry, f"the broker {self.address} refused it")

    def _say_refused(self, what: str, why: str, key: str = "refused") -> None:
        self._throttle(
            logger,
            logging.ERROR,
            key,
            "MQTT broker %s refused %s: %s (does its ACL let this client write %s/# and the "
            "discovery topics?); alerts are kept on disk and sent again every few minutes, and at the next connection",
            self.address,
            what,
            why,
            self.prefix,
        )

    def _delivered(self, entry: Entry) -> None:
        """Called once per acknowledged alert, after ``_clearing`` was counted up for it."""
        self.outbox.done(entry)
        logger.info("%s: alert %s delivered", entry.printer, entry.id)
        with self._lock:
            self._born.pop(entry.id, None)
            self._clearing -= 1
            self._lock.notify_all()
        self._retry_refused()  # alerts are taken now: those refused before may be too

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        topic = topic_text(msg)
        with self._lock:
            owner_check = topic in self._owner_checks
        if owner_check:
            self._on_owner_config(topic, bytes(msg.payload))
            return
        if self.discovery.enabled and topic in self.discovery.status_topics:
            # removed printers' entities going first: announced after them
            if not self._removing_entities() and self.discovery.on_status(bytes(msg.payload)):
                logger.info("Home Assistant is online: re-published discovery")
            return
        if command_kind(self.prefix, topic) is not None:
            if msg.retain:
                self._refuse_retained(topic, len(msg.payload))
                return
            if not msg.payload:
                return  # an empty message is how a retained command is cleared
        try:
            command = parse_command(self.prefix, self.printers, topic, bytes(msg.payload))
        except CommandError as exc:
            self._throttle(
                logger,
                logging.WARNING,
                f"command:{exc.kind}",
                "ignored MQTT message on %s: %s",
                topic[:200],
                exc,
            )
            return
        commands = self._commands
        put = commands.put(command) if commands is not None else Put.NOBODY
        if not put:
            refused = put.value
            # a flood is one log line and one retained answer a minute, not one each (each
            # printer's and kind's: another's refusal left this one's Last command unanswered,
            # a flood of verdicts an owner's refused Pause)
            if self._throttle(
                logger,
                logging.WARNING,
                f"commands-refused:{command.printer}:{command.verb.value}",
                "%s: MQTT command %s %s",
                command.printer,
                command.verb.value,
                refused,
            ):
                self.publish_answer(command, CommandResult(False, refused))
            return
        # taken: one line a minute per printer and command (each one carried out logs its
        # end), so a flood taken, as one refused, is not a line per message, and a rare
        # command (a cancel) is never hidden behind a flood of others
        self._throttle(
            logger,
            logging.INFO,
            f"taken:{command.printer}:{command.verb.value}",
            "%s: MQTT command %s%s",
            command.printer,
            command.verb.value,
            f" on incident {command.incident}" if command.incident else "",
        )

    def _refuse_retained(self, topic: str, size: int) -> None:
        """A retained command would be replayed at every reconnect: never run it, clear it."""
        if size == 0:
            return
        self._throttle(
            logger,
            logging.WARNING,
            "retained",  # one key: a flood of topics is one line a minute, one table entry
            "ignored a retained MQTT command on %s (commands are never replayed); "
            "cleared it on the broker. Publish commands without the retain flag",
            topic[:200],
        )
        with self._lock:
            waits = topic in self._clears.values() or len(self._clears) >= MAX_CLEARS_IN_FLIGHT
            if waits:  # cleared once a clear on its way has landed
                if len(self._clear_backlog) < MAX_CLEAR_BACKLOG:
                    self._clear_backlog[topic] = None
                return
        self._publish(topic, b"", retain=True, clearing=True)

    def _clear_landed(self, mid: int) -> None:
        """A retained command's clear reached the broker: the next topic waiting is cleared."""
        with self._lock:
            if self._clears.pop(mid, None) is None:
                return
            on_its_way = set(self._clears.values())
            topic = next((t for t in self._clear_backlog if t not in on_its_way), None)
            if topic is not None:
                del self._clear_backlog[topic]
        if topic is not None:
            self._publish(topic, b"", retain=True, clearing=True)

    # ----------------------------------------------------------------- publishing

    def _publish(
        self, topic: str, payload: bytes | str, retain: bool = False, clearing: bool = False
    ) -> None:
        """``clearing``: a retained command's clear, counted until the broker has it."""
        info = self.transport.publish(topic, payload, retain=retain)
        if retain:
            with self._lock:
                if payload:
                    self._emptied.pop(topic, None)
                else:
                    self._emptied[topic] = None
                    self._emptied.move_to_end(topic)
                    while len(self._emptied) > 4096:
                        self._emptied.popitem(last=False)
        if info is not None:
            with self._lock:
                landed = self._early_acks.pop(info.mid, None) is not None
                if clearing and not landed:
                    self._clears[info.mid] = topic
                if retain and payload and not landed:
                    value = payload.encode() if isinstance(payload, str) else bytes(payload)
                    self._unacked_retained[info.mid] = (topic, value)
                    while len(self._unacked_retained) > 1024:  # never acknowledged: let go
                        self._unacked_retained.popitem(last=False)

    def _retained_landed(self, mid: int) -> None:
        """A retained value reached the broker: where it is older than the daemon's latest of
        its topic and nothing newer is still on its way, the broker now keeps the older one
        (the Watching switch showed OFF for good while the printer was watched): the latest
        is sent again; on a topic emptied since (a printer removed), it is emptied again."""
        with self._lock:
            sent = self._unacked_retained.pop(mid, None)
            if sent is None:
                return
            topic, value = sent
            latest = self._retained.get(topic, b"" if topic in self._emptied else None)
            newer_on_its_way = any(t == topic for t, _ in self._unacked_retained.values())
            if latest is None or latest == value or newer_on_its_way:
                return
        self._publish(topic, latest, retain=True)

    def _retain(self, printer: str, name: str, payload: bytes, only_changes: bool = False) -> None:
        """Publish a printer's retained value now if connected; the latest one is re-sent on
        reconnect. A printer no longer in the config (a watcher still finishing its last step
        after a reload removed it) publishes nothing: its topics were taken off the broker."""
        if not self.enabled or printer not in self.printers:
            return
        topic = f"{self.prefix}/{printer}/{name}"
        with self._lock:
            if only_changes and self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
        if self.connected:
            self._publish(topic, payload, retain=True)

    def publish_state(self, printer: str, state: dict[str, Any]) -> None:
        """Retained JSON state; also the ``enabled`` switch state (from ``enabled`` or ``disabled``):
        off while the print under way is skipped too, so that switching it on watches it."""
        if not self.enabled:
            return
        self._retain(printer, "state", to_json({**state, "printer": printer}))
        enabled = state.get("enabled")
        if enabled is None:
            enabled = state.get("state") != "disabled"
        self.publish_enabled(printer, bool(enabled) and not state.get("skipping_print"))

    def publish_enabled(self, printer: str, enabled: bool) -> None:
        """Retained ON/OFF of the Home Assistant switch."""
        self._retain(printer, "enabled", b"ON" if enabled else b"OFF", only_changes=True)

    def publish_score(self, printer: str, score: float) -> None:
        """The score of the latest frame, retained: Home Assistant restarted showed the score
        unknown until the next frame judged (for an idle printer, until its next print)."""
        if math.isfinite(score):
            self._retain(printer, "score", f"{float(score):.6g}".encode())

    def publish_answer(self, command: Command, result: CommandResult) -> None:
        """What became of an owner's MQTT command, retained on ``<prefix>/<printer>/answer``
        (Home Assistant's "Last command" sensor): a button pressed there has no other way to
        learn that its Resume was refused, or which alert its Not a failure marked."""
        answer = {
            "command": command.verb.value,
            "incident": result.incident or command.incident,
            "ok": result.ok,
            "under_way": result.under_way,
            "unknown": result.unknown,
            "text": answer_text(command, result),
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._retain(command.printer, "answer", to_json(answer))
        if self._answered is not None:  # the page told first: the disk below may be slow
            self._answered(command, result)
        if self._kept is not None and command.printer in self.printers:
            self._kept.keep(command.printer, lambda: self._retained_json(command.printer, "answer"))

    def _retained_json(self, printer: str, name: str) -> dict[str, Any] | None:
        """A printer's latest retained JSON value (None: none, or not JSON)."""
        with self._lock:
            payload = self._retained.get(f"{self.prefix}/{printer}/{name}")
        try:
            value = None if payload is None else json.loads(payload)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def heatmaps(self) -> dict[str, tuple[bytes, float]]:
        """Each printer's latest heatmap (published, or waiting for the connection) and when
        it was first shown (the epoch)."""
        with self._lock:
            return {
                p: (jpeg, self._heatmap_shown.get(p, 0.0))
                for p in self.printers
                if (jpeg := self._retained.get(f"{self.prefix}/{p}/heatmap"))
            }

    def publish_heatmap(self, printer: str, jpeg: bytes, shown_at: float | None = None) -> None:
        """The frame with its heatmap overlay as raw JPEG bytes, retained. ``shown_at``: when
        it was first shown (one shown before a restart), else now."""
        with self._lock:
            self._heatmap_shown[printer] = time.time() if shown_at is None else shown_at
        self._retain(printer, "heatmap", bytes(jpeg))

    def send_alert(self, incident: Incident, again: bool = False) -> None:
        """Write the alert to the outbox, then publish it at QoS 1. ``again``: corrected since
        it was sent (its entry may still wait in the outbox: this one is another)."""
        if not self.enabled:
            return
        entry = self.outbox.put(
            MQTT, incident.printer, shown(incident.alert), entry_id=None if again else incident.id
        )
        with self._lock:
            self._born[entry.id] = time.monotonic()
            waiting = [e for e in self._unsent.values() if e.id != entry.id]
            started = self._started
            if not started:
                self._unsent[entry.id] = entry
        for old in waiting:  # a broker away for good: they are not kept for ever
            self._drop_if_too_old(old)
        if started:
            self._publish_alert(entry)

    def _drop_if_too_old(self, entry: Entry) -> None:
        with self._lock:
            born = self._born.get(entry.id)
            if born is None or not self._past_age(born):
                return
            if self._unsent.pop(entry.id, None) is None:
                return  # sent meanwhile
            self._born.pop(entry.id, None)
        self._said_too_old(entry)

    def _drop_inflight_too_old(self) -> None:
        """Alerts sent before the connection went and never acknowledged are sent again by
        the MQTT client at the new one: those past ``alert_max_age_h`` are taken out first."""
        with self._lock:
            old = {
                mid: entry
                for mid, entry in self._inflight.items()
                if self._past_age(self._born.get(entry.id, time.monotonic()))
            }
        forgotten = self.transport.forget(old)
        with self._lock:
            for mid in forgotten:
                self._inflight.pop(mid, None)
                self._born.pop(old[mid].id, None)
            self._lock.notify_all()  # flush() waits for the in-flight ones to go
        for mid in sorted(forgotten):
            self._said_too_old(old[mid])

    def _past_age(self, born: float) -> bool:
        """Whether an alert raised at ``born`` (monotonic) is past ``alert_max_age_h``."""
        return time.monotonic() - born > self.cfg.alert_max_age_h * 3600

    def _said_too_old(self, entry: Entry, why: str = "") -> None:
        self.outbox.done(entry)
        logger.warning(
            "MQTT: dropped alert %s of %s: not sent within %g h (mqtt.alert_max_age_h): %s",
            entry.id,
            entry.printer,
            self.cfg.alert_max_age_h,
            why or f"the broker {self.address} did not take it",
        )

    def _publish_alert(self, entry: Entry, why_late: str = "") -> None:
        """Publish the alert while connected, else keep it for the connection; one older
        than ``alert_max_age_h`` is dropped (a Home Assistant automation would act on it as
        news, hours after the print it was about), said with ``why_late``."""
        with self._lock:
            too_old = self._past_age(self._born.setdefault(entry.id, time.monotonic()))
            if not too_old and not self._online:
                self._unsent[entry.id] = entry
                return
            if too_old:
                self._born.pop(entry.id, None)
        if too_old:
            self._said_too_old(entry, why_late)
            return
        # Never hold self._lock around publish(): paho calls on_publish under its own lock.
        info = self.transport.publish(
            f"{self.prefix}/{entry.printer}/alert", to_json(entry.body), qos=1
        )
        if info is None:
            with self._lock:
                self._unsent[entry.id] = entry
            return
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early == "":
                self._clearing += 1
            elif early is None:
                self._inflight[info.mid] = entry
        if early == "":
            self._delivered(entry)
        elif early is not None:
            self._refused_alert(entry, early)


def _owner_topic(cfg: MqttConfig, printer: str) -> str:
    """The topic of a printer's first entity config: whose its availability topic is says
    which daemon announces the printer."""
    return next(iter(discovery_configs(cfg, printer)))
