"""MQTT clients for tests, on paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``).

:class:`Endpoint` says where and how to connect; :class:`Subscriber` records what
arrives and waits for it; :func:`try_connect` reports how a broker answers a
connection; :func:`publish` sends one message and waits for the broker to take it.
"""

from __future__ import annotations

import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.tls import KeyPair

MQTTv311 = MQTTProtocolVersion.MQTTv311
MQTTv5 = MQTTProtocolVersion.MQTTv5

#: A topic filter (exact topics too) or a test on a whole message.
Selector = str | Callable[["Message"], bool]


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects, with what credentials; TLS when ``ca`` is set."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    client_cert: KeyPair | None = None

    @property
    def tls(self) -> bool:
        return self.ca is not None


@dataclass(frozen=True)
class Message:
    """One message as a subscriber got it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()


def new_client(
    endpoint: Endpoint,
    *,
    client_id: str = "",
    protocol: MQTTProtocolVersion = MQTTv311,
    clean: bool = True,
    reconnect: bool = True,
) -> paho.Client:
    """A configured, unconnected paho client; ``clean=False`` asks for a persistent session
    (give a ``client_id`` then); ``reconnect=False`` makes its network loop give up when
    the connection drops instead of retrying."""
    client_id = client_id or f"bellad-test-{uuid.uuid4().hex[:12]}"
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean if protocol != MQTTv5 else None,
        protocol=protocol,
        reconnect_on_failure=reconnect,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.ca is not None:
        pair = endpoint.client_cert
        client.tls_set(
            ca_certs=str(endpoint.ca),
            certfile=str(pair.cert) if pair else None,
            keyfile=str(pair.key) if pair else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return client


def _connect(client: paho.Client, endpoint: Endpoint, clean: bool) -> None:
    """Open the connection (TCP and TLS handshakes happen here) and send CONNECT."""
    if client.protocol == MQTTv5:
        props = None
        if not clean:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        client.connect(
            endpoint.host, endpoint.port, keepalive=10, clean_start=clean, properties=props
        )
    else:
        client.connect(endpoint.host, endpoint.port, keepalive=10)


@dataclass(frozen=True)
class ConnectOutcome:
    """How a connection attempt ended: the CONNACK reason code, or the error raised
    before one came (a TLS verification failure, a refused socket)."""

    reason: ReasonCode | None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def __str__(self) -> str:
        if self.reason is not None:
            return f"CONNACK {self.reason.value}: {self.reason}"
        return f"{type(self.error).__name__}: {self.error}"


def _open(
    endpoint: Endpoint, protocol: MQTTProtocolVersion, timeout: float
) -> tuple[paho.Client, ConnectOutcome]:
    """A client with its network loop running, and how its connection attempt ended."""
    client = new_client(endpoint, protocol=protocol, reconnect=False)
    answered = threading.Event()
    outcomes: list[ConnectOutcome] = []

    def on_connect(c: paho.Client, u: Any, f: paho.ConnectFlags, rc: ReasonCode, p: Any) -> None:
        outcomes.append(ConnectOutcome(rc))
        answered.set()

    def on_disconnect(
        c: paho.Client, u: Any, f: paho.DisconnectFlags, rc: ReasonCode, p: Any
    ) -> None:
        # The connection dropped before any CONNACK, e.g. the broker wanted a client
        # certificate (with TLS 1.3 it says so only after the handshake).
        error = ConnectionAbortedError(f"connection closed before CONNACK: {rc}")
        outcomes.append(ConnectOutcome(None, error))
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        _connect(client, endpoint, clean=True)
    except (OSError, ssl.SSLError) as exc:
        return client, ConnectOutcome(None, exc)
    client.loop_start()
    if not answered.wait(timeout):
        return client, ConnectOutcome(None, TimeoutError(f"no CONNACK within {timeout:g} s"))
    return client, outcomes[0]


def _close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


def try_connect(
    endpoint: Endpoint, *, protocol: MQTTProtocolVersion = MQTTv311, timeout: float = 5.0
) -> ConnectOutcome:
    """Connect once, report how it went, and disconnect."""
    client, outcome = _open(endpoint, protocol, timeout)
    _close(client)
    return outcome


def publish(
    endpoint: Endpoint,
    topic: str,
    payload: str | bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 5.0,
) -> None:
    """Publish one message and wait until the broker has it (PUBACK for QoS 1).
    Raises ConnectionRefusedError if the broker will not take the connection."""
    client, outcome = _open(endpoint, MQTTv311, timeout)
    try:
        if not outcome.ok:
            raise ConnectionRefusedError(f"cannot publish to {topic!r}: {outcome}")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publishing to {topic!r} not acknowledged within {timeout:g} s")
    finally:
        _close(client)


class Subscriber:
    """Subscribes to topic filters and records every message in arrival order.

    It subscribes again on every (re)connection, so it keeps recording across a broker
    restart. ``start()`` returns once the broker has acknowledged the subscriptions.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        topics: Sequence[str],
        *,
        qos: int = 1,
        client_id: str = "",
        clean: bool = True,
        protocol: MQTTProtocolVersion = MQTTv311,
    ) -> None:
        self.endpoint = endpoint
        self.topics = list(topics)
        self.qos = qos
        self.clean = clean
        self.client = new_client(endpoint, client_id=client_id, protocol=protocol, clean=clean)
        self._messages: list[Message] = []
        self._changed = threading.Condition()
        self._refused: ReasonCode | None = None
        self._pending_mid: int | None = None
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._started = False

    # -- paho callbacks (network thread) ---------------------------------------------
    def _on_connect(
        self, client: paho.Client, u: Any, f: paho.ConnectFlags, rc: ReasonCode, p: Any
    ) -> None:
        if rc.is_failure:
            self._refused = rc
            self._subscribed.set()  # wakes start(), which reports the refusal
            return
        if self.topics:
            _, self._pending_mid = client.subscribe([(t, self.qos) for t in self.topics])
        else:
            self._subscribed.set()

    def _on_subscribe(
        self, c: paho.Client, u: Any, mid: int, granted: list[ReasonCode], p: Any
    ) -> None:
        if mid == self._pending_mid:
            refused = [str(r) for r in granted if r.is_failure]
            if refused:
                self._refused = granted[0]
            self._subscribed.set()

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        message = Message(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos))
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def _on_disconnect(
        self, c: paho.Client, u: Any, f: paho.DisconnectFlags, rc: ReasonCode, p: Any
    ) -> None:
        self._subscribed.clear()

    # -- test side ---------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> Subscriber:
        """Connect and subscribe; raise ConnectionRefusedError if the broker says no."""
        _connect(self.client, self.endpoint, self.clean)
        self.client.loop_start()
        self._started = True
        self.wait_subscribed(timeout)
        return self

    def wait_subscribed(self, timeout: float = 5.0) -> None:
        """Wait until connected and subscribed (after a reconnection too)."""
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"not subscribed to {self.topics} within {timeout:g} s")
        if self._refused is not None:
            reason, self._refused = self._refused, None
            self.close()
            raise ConnectionRefusedError(f"broker refused: {reason} ({reason.value})")

    @property
    def messages(self) -> list[Message]:
        """A copy of everything received so far."""
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        """Forget what was received so far."""
        with self._changed:
            self._messages.clear()

    def wait_for(self, what: Selector, count: int = 1, timeout: float = 5.0) -> list[Message]:
        """Wait until ``count`` messages match ``what`` (a topic filter or a predicate);
        return all that match. Fails the test with what did arrive on a timeout."""
        test = _selector(what)
        with self._changed:
            if self._changed.wait_for(
                lambda: sum(map(test, self._messages)) >= count, timeout=timeout
            ):
                return [m for m in self._messages if test(m)]
            got = [(m.topic, m.payload[:40]) for m in self._messages]
        label = what if isinstance(what, str) else getattr(what, "__name__", "predicate")
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {count} message(s) matching "
            f"{label!r}; received {len(got)}: {got}"
        )

    def close(self) -> None:
        """Disconnect and stop the network thread (safe to call twice)."""
        if self._started:
            self._started = False
            self.client.disconnect()
            self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _selector(what: Selector) -> Callable[[Message], bool]:
    if isinstance(what, str):
        return lambda m: paho.topic_matches_sub(what, m.topic)
    return what
