"""The MQTT sink: the topic contract on top of the durable outbox and the link.

* ``transcript`` (and Hermes ``textCaptured`` when enabled): appended to the
  outbox, then sent in order, QoS 1; nothing is lost while the broker is away.
* ``speech``: ``ON``/``OFF`` as the VAD opens and closes, sent only while
  connected (the current state is sent again on every connection).
* ``availability``, ``state`` (retained), ``stats`` (periodic) and Home
  Assistant discovery: sent on every connection and when they change.
* ``listening/set`` and the Hermes toggles drive the privacy mute through
  :class:`Control`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from bellad import __version__, hermes
from bellad.config import MqttConfig, ServiceConfig
from bellad.contract import Topics, parse_listening, stamp_published, transcript_payload
from bellad.events import Event, Result, SpeechEnded, SpeechStarted
from bellad.homeassistant import discovery_payload, discovery_topic
from bellad.mqtt import MqttLink
from bellad.outbox import Outbox
from bellad.sinks import to_json_line

log = logging.getLogger(__name__)


class Control(Protocol):
    """What the sink needs from the daemon: the mute, and the state and stats payloads."""

    @property
    def listening(self) -> bool: ...

    def set_listening(self, on: bool) -> None: ...

    def state_payload(self) -> dict[str, Any]: ...

    def stats_payload(self) -> dict[str, Any]: ...


def dumps(payload: dict[str, Any]) -> bytes:
    return to_json_line(payload).encode()


class MqttSink:
    """Publishes the contract for one device; see the module docstring."""

    name = "mqtt"

    def __init__(
        self, cfg: MqttConfig, service: ServiceConfig, control: Control, outbox: Outbox
    ) -> None:
        self.cfg = cfg
        self.site = service.site
        self.room = service.room
        self.control = control
        self.outbox = outbox
        self.topics = Topics(cfg.prefix, service.site)
        self.speaking = False
        self._next_stats = time.monotonic() + cfg.stats_interval_s
        self.link = MqttLink(
            cfg,
            cfg.client_id or f"bellad-{self.site}",
            (self.topics.availability, b"offline"),
            outbox,
            stamp=self._stamp,
        )
        self.link.subscribe(self.topics.listening_set, self._on_listening_set)
        if cfg.homeassistant.discovery:
            self.link.subscribe(f"{cfg.homeassistant.prefix}/status", self._on_ha_status)
        if cfg.hermes.enabled:
            self.link.subscribe(hermes.TOGGLE_OFF, self._on_hermes_toggle)
            self.link.subscribe(hermes.TOGGLE_ON, self._on_hermes_toggle)
        self.link.on_connect.append(self._announce)
        self.link.on_tick.append(self._tick)

    def start(self) -> None:
        self.link.start()

    def reconfigure(self, stats_interval_s: float, room: str) -> None:
        """Apply a reloaded config's live MQTT settings; state and discovery are sent again."""
        self.cfg = self.cfg.model_copy(update={"stats_interval_s": stats_interval_s})
        self.room = room
        if self.link.connected.is_set():
            self._announce(self.link)
        self.link.wake()  # the link's thread sleeps until the old interval's stats

    # -- events from the pipeline -------------------------------------------

    def handle(self, event: Event) -> None:
        if isinstance(event, Result):
            payload = transcript_payload(event, self.site, self.room)
            self.outbox.append(self.topics.transcript, dumps(payload))
            if self.cfg.hermes.enabled:
                self.outbox.append(
                    hermes.TEXT_CAPTURED, dumps(hermes.text_captured(event, self.site))
                )
            self.link.wake()
        elif isinstance(event, SpeechStarted | SpeechEnded):
            self.speaking = isinstance(event, SpeechStarted)
            self.link.publish_now(self.topics.speech, "ON" if self.speaking else "OFF")

    def close(self) -> None:
        self.link.stop(self.cfg.flush_timeout_s)

    def _stamp(self, topic: str, payload: bytes, queued: float) -> bytes:
        return stamp_published(payload, queued) if topic == self.topics.transcript else payload

    # -- on connection and periodically (the link's thread) ------------------

    def _announce(self, link: MqttLink) -> None:
        link.publish_now(self.topics.availability, "online", retain=True)
        self.publish_state()
        link.publish_now(self.topics.speech, "ON" if self.speaking else "OFF")
        if self.cfg.homeassistant.discovery:
            self.publish_discovery()
        self.publish_stats()

    def _tick(self) -> float:
        """Publish stats when due; the seconds until they are due again."""
        if not self.cfg.stats_interval_s:
            return float("inf")
        if time.monotonic() >= self._next_stats:
            self.publish_stats()
        return self._next_stats - time.monotonic()

    def publish_state(self) -> None:
        self.link.publish_now(self.topics.state, dumps(self.control.state_payload()), retain=True)

    def publish_stats(self) -> None:
        self._next_stats = time.monotonic() + self.cfg.stats_interval_s
        if self.cfg.stats_interval_s:
            self.link.publish_now(self.topics.stats, dumps(self.control.stats_payload()))

    def publish_discovery(self) -> None:
        ha = self.cfg.homeassistant
        payload = discovery_payload(
            self.topics, self.site, self.room, __version__, stats=bool(self.cfg.stats_interval_s)
        )
        self.link.publish_now(discovery_topic(ha, self.site), dumps(payload), retain=True)

    # -- commands (paho's thread) ---------------------------------------------

    def _set_listening(self, on: bool, why: str) -> None:
        if on != self.control.listening:
            log.info("listening %s by %s", "on" if on else "off", why)
        self.control.set_listening(on)
        self.publish_state()

    def _on_listening_set(self, topic: str, payload: bytes) -> None:
        on = parse_listening(payload)
        if on is None:
            log.warning("%s: ignored payload %r (expected ON or OFF)", topic, payload[:40])
            return
        self._set_listening(on, topic)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            log.info("Home Assistant came online: sending discovery again")
            self.publish_discovery()
            self.publish_state()

    def _on_hermes_toggle(self, topic: str, payload: bytes) -> None:
        if hermes.toggle_applies(payload, self.site):
            self._set_listening(topic == hermes.TOGGLE_ON, topic)
