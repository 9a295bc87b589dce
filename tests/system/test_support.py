"""The system-test support works: a real broker (auth, TLS, ACL, persistence across a
crash) and a real PulseAudio microphone that delivers what is fed, bit-exact."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from tests.support.broker import Mosquitto
from tests.support.mqtt_clients import publish, try_connect
from tests.support.plugin import SECURE_USERS, MakeBroker, MakeSubscriber, failing_if_missing
from tests.support.pulse import PulseServer, chirp, find_exact
from tests.support.tools import require_program

pytestmark = pytest.mark.system

BLOCK = 320  # 20 ms at 16 kHz


def test_missing_program_fails_naming_the_package() -> None:
    needs = pytest.raises(pytest.fail.Exception, match=r"apt-get install pulseaudio-utils")
    with needs, failing_if_missing():
        require_program("pactl", "pulseaudio-utils", path="/nonexistent/pactl")


# -- broker -------------------------------------------------------------------------------
def test_pubsub_through_plain_broker(mosquitto: Mosquitto, subscriber: MakeSubscriber) -> None:
    sub = subscriber(mosquitto, "bellad/test/#")
    publish(mosquitto.endpoint(), "bellad/test/speech", "ON", qos=0)
    publish(mosquitto.endpoint(), "bellad/test/transcript", b'{"text": "hi"}', qos=1)
    publish(mosquitto.endpoint(), "elsewhere", "ignored")
    publish(mosquitto.endpoint(), "bellad/test/availability", "online", retain=True)

    got = sub.wait_for("bellad/test/#", count=3)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("bellad/test/speech", b"ON", 0),
        ("bellad/test/transcript", b'{"text": "hi"}', 1),
        ("bellad/test/availability", b"online", 1),
    ]
    late = subscriber(mosquitto, "bellad/test/availability")
    (retained,) = late.wait_for(lambda m: m.retain)
    assert retained.text == "online"


def test_password_auth(secure_mosquitto: Mosquitto, subscriber: MakeSubscriber) -> None:
    for user in SECURE_USERS:
        outcome = try_connect(secure_mosquitto.endpoint(user))
        assert outcome.ok, outcome
    for endpoint in (
        secure_mosquitto.endpoint("bellad", password="wrong"),
        secure_mosquitto.endpoint("nobody", password="x"),
        secure_mosquitto.endpoint(),  # anonymous
    ):
        outcome = try_connect(endpoint)
        assert outcome.reason is not None and outcome.reason.is_failure, outcome
        # Mosquitto 2.0 answers "not authorised" (3.1.1 code 5, i.e. 135), not 134.
        assert outcome.reason.value == 135, outcome
    with pytest.raises(ConnectionRefusedError, match="Not authorized"):
        subscriber(secure_mosquitto.endpoint("bellad", password="wrong"), "bellad/#")
    with pytest.raises(ConnectionRefusedError, match="Not authorized"):
        publish(secure_mosquitto.endpoint(), "bellad/anonymous", "no")


def test_tls_verifies_the_broker(secure_mosquitto: Mosquitto, subscriber: MakeSubscriber) -> None:
    by_name = secure_mosquitto.endpoint("bellad", tls=True)
    assert by_name.host == "localhost"
    assert try_connect(by_name).ok
    assert try_connect(replace(by_name, host="127.0.0.1")).ok  # the IP SAN

    wrong = secure_mosquitto.endpoint("bellad", tls=True, ca=secure_mosquitto.wrong_ca().cert)
    outcome = try_connect(wrong)
    assert isinstance(outcome.error, ssl.SSLCertVerificationError), outcome

    sub = subscriber(secure_mosquitto, "bellad/#", user="observer", tls=True)
    publish(by_name, "bellad/tls", "sealed")
    assert sub.wait_for("bellad/tls")[0].text == "sealed"


def test_client_certificates(mosquitto_factory: MakeBroker) -> None:
    broker = mosquitto_factory(tls=True, require_certificate=True, allow_anonymous=False)
    with_cert = broker.endpoint(tls=True, client_cert=broker.client_cert("bellad-kitchen"))
    assert try_connect(with_cert).ok
    outcome = try_connect(broker.endpoint(tls=True))
    assert isinstance(outcome.error, ConnectionAbortedError), outcome
    broker.wait_log(r"as \S+ .*u'bellad-kitchen'")  # the CN became the username


def test_acl_limits_a_user(mosquitto_factory: MakeBroker, subscriber: MakeSubscriber) -> None:
    acl = "user bellad\ntopic readwrite bellad/#\n\nuser observer\ntopic read bellad/#\n"
    broker = mosquitto_factory(users=dict(SECURE_USERS), acl=acl)
    sub = subscriber(broker, "bellad/#", user="observer")
    publish(broker.endpoint("observer"), "bellad/forged", "no")  # acknowledged, dropped
    publish(broker.endpoint("bellad"), "bellad/real", "yes")
    assert [m.topic for m in sub.wait_for("bellad/#")] == ["bellad/real"]
    assert [m.topic for m in sub.messages] == ["bellad/real"]


@pytest.mark.parametrize("persistence", [True, False])
def test_kill_and_restart(
    mosquitto_factory: MakeBroker, subscriber: MakeSubscriber, persistence: bool
) -> None:
    broker = mosquitto_factory(persistence=persistence)
    port, endpoint = broker.port, broker.endpoint()
    subscriber(broker, "bellad/#", client_id="keeper", clean=False).close()
    mark = broker.log_offset()
    publish(endpoint, "bellad/queued", "while you were away", qos=1)
    if persistence:  # autosave runs after every change: wait for the one after PUBLISH
        seen = broker.wait_log(r"Received PUBLISH .*'bellad/queued'", after=mark)
        broker.wait_saved(after=seen.end())

    broker.kill()
    assert not broker.running
    broker.restart()
    assert broker.port == port

    sub = subscriber(broker, "bellad/#", client_id="keeper", clean=False)
    if persistence:
        (got,) = sub.wait_for("bellad/queued")
        assert (got.payload, got.qos) == (b"while you were away", 1)
    else:
        time.sleep(0.3)
        assert sub.messages == []


def test_subscriber_survives_a_restart(mosquitto: Mosquitto, subscriber: MakeSubscriber) -> None:
    sub = subscriber(mosquitto, "bellad/#")
    mosquitto.stop()
    mosquitto.restart()
    sub.wait_subscribed(timeout=10)  # paho reconnects after 1 s; we subscribe again
    publish(mosquitto.endpoint(), "bellad/after", "back")
    assert sub.wait_for("bellad/after")[0].text == "back"


# -- sound server ---------------------------------------------------------------------------
@contextmanager
def pulse_input(block: int = BLOCK) -> Iterator[Any]:
    """A PyAudio int16 16 kHz mono input stream on the ALSA ``pulse`` device."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        names = [pa.get_device_info_by_index(i)["name"] for i in range(pa.get_device_count())]
        assert "pulse" in names, names
        stream = pa.open(
            format=pyaudio.paInt16,
            channels=1,
            rate=16000,
            input=True,
            input_device_index=names.index("pulse"),
            frames_per_buffer=block,
        )
        try:
            yield stream
        finally:
            stream.close()
    finally:
        pa.terminate()


def read_until_found(stream: Any, needle: np.ndarray, timeout: float) -> tuple[np.ndarray, int]:
    """Read 20 ms blocks until ``needle`` appears bit-exact; the capture and its offset."""
    blocks: list[np.ndarray] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocks.append(np.frombuffer(stream.read(BLOCK, exception_on_overflow=False), "<i2"))
        if len(blocks) % 10 == 0 or time.monotonic() >= deadline:
            captured = np.concatenate(blocks)
            at = find_exact(captured, needle)
            if at is not None:
                return captured, at
    raise AssertionError(f"not found in {sum(map(len, blocks)) / 16000:.2f} s of capture")


def test_pyaudio_lists_pulse_device_in_subprocess(pulse: PulseServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")} | pulse.env
    code = (
        "import pyaudio; pa = pyaudio.PyAudio(); "
        "print([pa.get_device_info_by_index(i)['name'] for i in range(pa.get_device_count())])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "'pulse'" in done.stdout, done.stdout + done.stderr
    assert pulse.pactl("get-default-source").strip() == pulse.source


def test_fed_audio_comes_out_bit_exact(pulse: PulseServer) -> None:
    sweep = chirp(1.0)
    with pulse_input() as stream:
        pulse.feeder.feed_silence(0.1)
        pulse.feeder.feed(sweep[:5000])  # queued back to back: one contiguous stretch
        pulse.feeder.feed(sweep[5000:].tobytes())
        captured, at = read_until_found(stream, sweep, 5.0)
    pulse.feeder.wait_drained(timeout=1)
    assert not captured[at - 100 : at].any()  # silence right before it


def drain(stream: Any, quiet: float = 0.2, timeout: float = 3.0) -> None:
    """Read until nothing has arrived for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        if available := stream.get_read_available():
            stream.read(available, exception_on_overflow=False)
            last = time.monotonic()
        assert time.monotonic() < deadline, "audio keeps coming"
        time.sleep(0.01)


def test_paused_feeder_stalls_the_device(pulse: PulseServer) -> None:
    feeder = pulse.feeder
    with pulse_input() as stream:
        stream.read(BLOCK * 5, exception_on_overflow=False)  # flowing
        feeder.pause()
        drain(stream)  # what was in flight
        feeder.feed(chirp(0.2))
        time.sleep(0.3)
        assert stream.get_read_available() == 0  # nothing comes: the device is stalled
        with pytest.raises(TimeoutError):
            feeder.wait_drained(timeout=0.1)
        feeder.resume()
        read_until_found(stream, chirp(0.2), 3.0)
        feeder.wait_drained(timeout=1)
