"""Publishing to MQTT with paho-mqtt 2.x.

Topics live under ``<prefix>/<site>/``: ``transcript`` (one JSON event per
utterance, QoS 1), ``speech`` (``ON``/``OFF`` as the VAD opens and closes) and
``availability`` (retained ``online``; ``offline`` as the last will and on a
clean shutdown). The connection is made in the background and retried by
paho with backoff, so the daemon listens whether the broker is up or not.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bellad.config import MqttConfig
from bellad.events import Event, Result, SpeechEnded, SpeechStarted
from bellad.sinks import to_json_line

log = logging.getLogger(__name__)


class Topics:
    """Topic names for one device."""

    def __init__(self, prefix: str, site: str) -> None:
        self.base = f"{prefix}/{site}"
        self.availability = f"{self.base}/availability"
        self.transcript = f"{self.base}/transcript"
        self.speech = f"{self.base}/speech"


class MqttSink:
    """Publishes results and speech state; paho's network thread does the I/O."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, site: str, client: Any | None = None) -> None:
        import paho.mqtt.client as paho

        self.cfg = cfg
        self.site = site
        self.topics = Topics(cfg.prefix, site)
        self.connected = threading.Event()
        self.client = client or paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"bellad-{site}",
            protocol=paho.MQTTv311,
        )
        self.client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error(
                "MQTT broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason
            )
            return
        log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
        self.connected.set()
        client.publish(self.topics.availability, "online", qos=1, retain=True)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self.connected.is_set():
            log.warning("disconnected from MQTT broker: %s", reason)
        self.connected.clear()

    def handle(self, event: Event) -> None:
        if isinstance(event, Result):
            payload = {"site": self.site, **event.to_dict()}
            self.client.publish(self.topics.transcript, to_json_line(payload), qos=1)
        elif isinstance(event, SpeechStarted | SpeechEnded):
            state = "ON" if isinstance(event, SpeechStarted) else "OFF"
            self.client.publish(self.topics.speech, state, qos=0)

    def close(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            info.wait_for_publish(timeout=2)
            self.client.disconnect()
        self.client.loop_stop()
