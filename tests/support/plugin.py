"""pytest fixtures over the real broker and sound server.

Load from the root ``conftest.py``: ``pytest_plugins = ["tests.support.plugin"]``.
A missing program fails the test with the Debian package to install; nothing skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from tests.support.broker import BrokerConfig, Mosquitto
from tests.support.mqtt_clients import Endpoint, MQTTv311, Subscriber
from tests.support.pulse import PulseServer, require_alsa_pulse_plugin
from tests.support.tools import MissingProgram

#: The accounts of ``secure_mosquitto``: the daemon's, and a read-only observer's.
SECURE_USERS = {"bellad": "bellad-test-secret", "observer": "observer-test-secret"}

MakeBroker = Callable[..., Mosquitto]
MakeSubscriber = Callable[..., Subscriber]


@contextmanager
def failing_if_missing() -> Iterator[None]:
    """Turn a missing program into a failure that says what to install."""
    try:
        yield
    except MissingProgram as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def mosquitto_factory() -> Iterator[MakeBroker]:
    """``make(**BrokerConfig fields)``: a started broker, stopped and removed after."""
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        with failing_if_missing():
            broker = Mosquitto(BrokerConfig(**options))
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in reversed(brokers):
        broker.close()


@pytest.fixture
def mosquitto(mosquitto_factory: MakeBroker) -> Mosquitto:
    """An anonymous broker on 127.0.0.1 (``.port``), fresh for each test."""
    return mosquitto_factory()


@pytest.fixture
def secure_mosquitto(mosquitto_factory: MakeBroker) -> Mosquitto:
    """A broker with the users of :data:`SECURE_USERS`, no anonymous access, a plain
    listener (``.port``) and a TLS listener (``.tls_port``, CA in ``.ca``)."""
    return mosquitto_factory(users=dict(SECURE_USERS), tls=True)


@pytest.fixture
def subscriber() -> Iterator[MakeSubscriber]:
    """``make(target, *topics, user=None, tls=False, **Subscriber options)``: a started
    subscriber on a broker (or an :class:`Endpoint`), closed after the test."""
    made: list[Subscriber] = []

    def make(
        target: Mosquitto | Endpoint,
        *topics: str,
        user: str | None = None,
        tls: bool = False,
        qos: int = 1,
        client_id: str = "",
        clean: bool = True,
        protocol: MQTTProtocolVersion = MQTTv311,
    ) -> Subscriber:
        endpoint = target.endpoint(user, tls=tls) if isinstance(target, Mosquitto) else target
        sub = Subscriber(
            endpoint, topics, qos=qos, client_id=client_id, clean=clean, protocol=protocol
        )
        made.append(sub)
        return sub.start()

    yield make
    for sub in reversed(made):
        sub.close()


@pytest.fixture(scope="session")
def pulse_server() -> Iterator[PulseServer]:
    """One PulseAudio daemon and feeder for the whole session; use :func:`pulse`."""
    with failing_if_missing():
        require_alsa_pulse_plugin()
        server = PulseServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pulse(pulse_server: PulseServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    """The session's sound server, with this process pointed at it for the test
    (``PULSE_SERVER`` set before PyAudio starts) and its feeder writing silence with an
    empty queue, before and after the test. Subprocesses need ``env={**os.environ}`` or
    ``pulse.env``."""
    feeder = pulse_server.feeder
    feeder.check()
    for name, value in pulse_server.env.items():
        monkeypatch.setenv(name, value)
    feeder.clear()
    feeder.resume()
    yield pulse_server
    feeder.clear()
    feeder.resume()
