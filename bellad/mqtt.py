"""MQTT with paho-mqtt 2.x: a connection that comes back, and a sink that loses nothing.

:class:`MqttLink` owns the connection on its own thread: a fresh paho client
per connection (TCP or TLS, MQTT 3.1.1 or 5, username and password, the
retained ``offline`` last will), reconnection with exponential backoff and
jitter, and one clear log line per change of connection state (a refused
password or a failed TLS handshake is reported once, not at every retry).
While connected it drains the :class:`~bellad.outbox.Outbox` in order, a few
messages in flight, deleting each only when the broker acknowledges it.

:class:`MqttSink` is the pipeline's sink: results go into the outbox first;
speech ``ON``/``OFF`` is sent only while connected (stale speech state is
worse than none). On connect it publishes availability, state and Home
Assistant discovery, and subscribes to its command topics.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential_jitter

from bellad.config import MqttConfig
from bellad.errors import ConfigError
from bellad.outbox import Outbox

log = logging.getLogger(__name__)

IN_FLIGHT = 16  # QoS 1 messages awaiting PUBACK at once
CONNACK_TIMEOUT_S = 15.0
IDLE_WAIT_S = 30.0  # the link's thread, connected and with nothing due: everything else wakes it

Handler = Callable[[str, bytes], None]
OnConnect = Callable[["MqttLink"], None]
Stamp = Callable[[str, bytes, float], bytes]


class ConnectFailed(Exception):
    """One connection attempt failed; ``state`` is what the log reports."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password: systemd credential first, then ``password_file``; never logged."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / cfg.password_credential).is_file():
        source = Path(creds) / cfg.password_credential
        key = f"credential {cfg.password_credential!r}"
    elif cfg.password_file is not None:
        source, key = cfg.password_file, "mqtt.password_file"
    else:
        return None
    try:
        return source.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{key} = '{source}': cannot read the MQTT password: {reason}") from None


def check_tls_files(cfg: MqttConfig) -> None:
    """Fail at start, naming the key and file, when a TLS file cannot be read."""
    tls = cfg.tls
    if not tls.enabled:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        path: Path | None = getattr(tls, key)
        if path is None:
            continue
        try:
            path.open("rb").close()
        except OSError as exc:
            raise ConfigError(
                f"mqtt.tls.{key} = '{path}': cannot read it: {exc.strerror}"
            ) from None


class MqttLink:
    """One broker connection, kept up by a background thread; drains an outbox."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will: tuple[str, bytes],
        outbox: Outbox,
        stamp: Stamp | None = None,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.will = will
        self.outbox = outbox
        self.stamp = stamp
        self.password = read_password(cfg)
        check_tls_files(cfg)
        self.handlers: dict[str, Handler] = {}
        self.on_connect: list[OnConnect] = []
        # called on the link's thread while connected; each returns the seconds until
        # it wants to be called again: between those, the thread sleeps unless woken
        self.on_tick: list[Callable[[], float]] = []
        self.state = "starting"
        self.connected = threading.Event()
        self._client: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked: deque[tuple[int, str]] = deque()  # (mid, refusal reason or "")
        self._connack: tuple[bool, str] | None = None
        self._thread = threading.Thread(target=self._run, name="bellad-mqtt", daemon=True)

    # -- public --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic`` (every connection)."""
        self.handlers[topic] = handler

    def wake(self) -> None:
        """Something was appended to the outbox: send it now."""
        self._wake.set()

    def publish_now(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> bool:
        """Send a message that is only worth sending now; False (dropped) when offline."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        return bool(client.publish(topic, payload, qos=qos, retain=retain).rc == 0)

    def stop(self, flush_timeout: float) -> None:
        """Send what the outbox holds (up to ``flush_timeout``), go offline, disconnect."""
        deadline = time.monotonic() + flush_timeout
        while self.outbox.depth and time.monotonic() < deadline and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.05)
        if self.outbox.depth:
            log.info("%d message(s) stay in the outbox for the next start", self.outbox.depth)
        self._stop.set()
        self._wake.set()
        self._thread.join(flush_timeout + 5)

    # -- connection ----------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        where = f"{self.cfg.host}:{self.cfg.effective_port}"
        if state == "connected":
            log.info("MQTT: connected to %s as %s", where, self.client_id)
        elif self.state == "connected":
            log.warning("MQTT: lost the connection to %s: %s", where, state)
        else:
            log.error("MQTT: cannot connect to %s: %s", where, state)
        self.state = state

    def _new_client(self) -> Any:
        import paho.mqtt.client as paho

        v5 = self.cfg.protocol == "5"
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
            reconnect_on_failure=False,  # reconnecting is this class's job (backoff, jitter, logs)
        )
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self.password)
        tls = self.cfg.tls
        if tls.enabled:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(not tls.verify_hostname)
        client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        client.max_inflight_messages_set(IN_FLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect_once(self) -> None:
        client = self._new_client()
        self._connack = None
        try:
            client.connect(self.cfg.host, self.cfg.effective_port, keepalive=self.cfg.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(
                f"TLS handshake failed: certificate verify failed: {exc.verify_message} "
                "(check mqtt.tls.ca_file and mqtt.host)"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectFailed(
                f"TLS handshake failed: {exc.reason or exc} (check mqtt.tls)"
            ) from None
        except OSError as exc:
            raise ConnectFailed(f"{exc.strerror or exc}") from None
        client.loop_start()
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None and time.monotonic() < deadline and not self._stop.is_set():
            self._wake.wait(0.05)
        ok, reason = self._connack or (False, "no answer to CONNECT")
        if not ok:
            client.disconnect()
            client.loop_stop()
            hint = (
                " (check mqtt.username and the password)"
                if "auth" in reason.lower() or ("password" in reason.lower())
                else ""
            )
            raise ConnectFailed(f"the broker refused: {reason}{hint}")
        self._client = client

    def _connect_with_backoff(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(ConnectFailed),
            wait=wait_exponential_jitter(
                multiplier=self.cfg.reconnect_min_s, max=self.cfg.reconnect_max_s
            ),
            stop=stop_when_event_set(self._stop),
            sleep=self._stop.wait,  # type: ignore[arg-type]
            before_sleep=lambda s: self._set_state(
                s.outcome.exception().state if s.outcome and s.outcome.exception() else "failed"  # type: ignore[union-attr]
            ),
            reraise=True,
        )
        try:
            retrying(self._connect_once)
        except ConnectFailed:
            if not self._stop.is_set():
                raise

    # -- paho callbacks (paho's network thread) ------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connack = (not reason.is_failure, str(reason))
        if not reason.is_failure:
            self.connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self._wake.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acked.append((mid, str(reason) if reason.is_failure else ""))
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        handler = self.handlers.get(message.topic)
        if handler is None:
            return
        try:
            handler(message.topic, bytes(message.payload))
        except Exception:
            log.exception("MQTT: handling a message on %s failed", message.topic)

    # -- the link thread -----------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._connect_with_backoff()
            except ConnectFailed:
                continue
            if self._stop.is_set() or self._client is None:
                break
            self._session(self._client)
            self._stop.wait(self.cfg.reconnect_min_s)
        self._close_client()

    def _session(self, client: Any) -> None:
        self._set_state("connected")
        for topic in self.handlers:
            client.subscribe(topic, qos=1)
        for hook in self.on_connect:
            hook(self)
        in_flight: dict[int, int] = {}  # mid -> outbox seq
        last_sent = 0
        while self.connected.is_set() and not self._stop.is_set():
            self._wake.clear()
            while self._acked:
                mid, refused = self._acked.popleft()
                seq = in_flight.pop(mid, None)
                if seq is None:
                    continue
                if refused:  # MQTT 5: the broker will never take it (an ACL): do not retry forever
                    log.error(
                        "MQTT: the broker refused message %d: %s (check its ACL)", seq, refused
                    )
                self.outbox.ack(seq)
            if len(in_flight) < IN_FLIGHT:
                last_sent = self._send(client, in_flight, last_sent)
            due = [tick() for tick in self.on_tick]
            self._wake.wait(max(0.05, min([IDLE_WAIT_S, *due])))
        if not self._stop.is_set():
            self._set_state("disconnected")
            client.loop_stop()

    def _send(self, client: Any, in_flight: dict[int, int], last_sent: int) -> int:
        for message in self.outbox.peek(after=last_sent, limit=IN_FLIGHT - len(in_flight)):
            payload = (
                self.stamp(message.topic, message.payload, message.created)
                if self.stamp
                else (message.payload)
            )
            info = client.publish(message.topic, payload, qos=message.qos)
            if info.rc != 0:
                break  # not connected any more: the session loop notices
            if message.qos == 0:
                self.outbox.ack(message.seq)
            else:
                in_flight[info.mid] = message.seq
            last_sent = message.seq
        return last_sent

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self.connected.is_set():
            info = client.publish(self.will[0], b"offline", qos=1, retain=True)
            info.wait_for_publish(timeout=2)
            client.disconnect()
        client.loop_stop()
        self.connected.clear()
