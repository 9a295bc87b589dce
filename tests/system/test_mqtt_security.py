"""TLS, passwords and credentials against a real Mosquitto; each failure named clearly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.broker import Mosquitto
from tests.support.daemon import DaemonProcess
from tests.support.mqtt_clients import Subscriber
from tests.support.plugin import SECURE_USERS
from tests.support.speech import write_wav

AVAILABILITY = "bellad/testroom/availability"


@pytest.fixture
def silence(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "silence.wav", np.zeros(16_000 * 2, np.int16))


def secure_config(broker: Mosquitto, wav: Path, **mqtt: Any) -> dict[str, Any]:
    assert broker.ca is not None
    return {
        "audio": {"source": "file", "file": str(wav), "realtime": True, "loop": True},
        "mqtt": {
            "enabled": True,
            "host": "localhost",
            "port": broker.tls_port,
            "username": "bellad",
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.3,
            "tls": {"enabled": True, "ca_file": str(broker.ca.cert)},
            **mqtt,
        },
    }


def password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text(password + "\n")
    return path


def test_tls_and_password_from_a_file(
    secure_mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    make_config: Callable[..., Path],
    silence: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(secure_mosquitto, AVAILABILITY, user="observer", tls=True)
    secret = password_file(tmp_path, SECURE_USERS["bellad"])
    config = make_config(secure_config(secure_mosquitto, silence, password_file=str(secret)))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        assert sub.wait_for(AVAILABILITY, timeout=60)[0].text == "online"
        assert daemon.stop() == 0
    assert sub.wait_for(AVAILABILITY, count=2)[1].text == "offline"
    assert SECURE_USERS["bellad"] not in daemon.log  # never logged


def test_password_from_systemd_credentials(
    secure_mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    make_config: Callable[..., Path],
    silence: Path,
    tmp_path: Path,
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text(SECURE_USERS["bellad"])
    sub = subscriber(secure_mosquitto, AVAILABILITY, user="observer", tls=True)
    config = make_config(secure_config(secure_mosquitto, silence))
    with DaemonProcess(config, tmp_path, env={"CREDENTIALS_DIRECTORY": str(creds)}) as daemon:
        daemon.start()
        assert sub.wait_for(AVAILABILITY, timeout=60)[0].text == "online"
        assert daemon.stop() == 0


def test_refused_password_is_logged_once_and_the_daemon_keeps_listening(
    secure_mosquitto: Mosquitto, make_config: Callable[..., Path], silence: Path, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, "not-the-password")
    config = make_config(secure_config(secure_mosquitto, silence, password_file=str(secret)))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        daemon.wait_log("ready: listening", timeout=60)
        line = daemon.wait_log("MQTT: cannot connect to", timeout=30)[0]
        assert "the broker refused: Not authorized (check mqtt.username and the password)" in line
        refusals = secure_mosquitto.log_offset()
        secure_mosquitto.wait_log("not authorised", after=refusals, timeout=10)  # still retrying
        assert daemon.log.count("MQTT: cannot connect to") == 1  # once per change of state
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.stop() == 0


def test_wrong_ca_is_logged_once(
    secure_mosquitto: Mosquitto, make_config: Callable[..., Path], silence: Path, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, SECURE_USERS["bellad"])
    cfg = secure_config(secure_mosquitto, silence, password_file=str(secret))
    cfg["mqtt"]["tls"]["ca_file"] = str(secure_mosquitto.wrong_ca().cert)
    with DaemonProcess(make_config(cfg), tmp_path) as daemon:
        daemon.start()
        line = daemon.wait_log("MQTT: cannot connect to", timeout=60)[0]
        assert "TLS handshake failed: certificate verify failed" in line
        assert "check mqtt.tls.ca_file" in line
        daemon.wait_log("ready: listening", timeout=30)
        time.sleep(1.5)  # several retries
        assert daemon.log.count("MQTT: cannot connect to") == 1
        assert daemon.stop() == 0


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_password_file_names_it(
    secure_mosquitto: Mosquitto,
    make_config: Callable[..., Path],
    silence: Path,
    tmp_path: Path,
    kind: str,
) -> None:
    path = tmp_path / "no-such-password"
    if kind == "directory":
        path.mkdir()
    config = make_config(secure_config(secure_mosquitto, silence, password_file=str(path)))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        assert daemon.wait(60) == 78
    errors = [line for line in daemon.log.splitlines() if line.startswith("bellad: error:")]
    reason = "No such file or directory" if kind == "missing" else "Is a directory"
    assert errors == [
        f"bellad: error: mqtt.password_file = '{path}': cannot read the MQTT password: {reason}"
    ]
    assert "Traceback" not in daemon.log


def test_tls_with_a_client_certificate(
    mosquitto_factory: Callable[..., Mosquitto],
    make_config: Callable[..., Path],
    silence: Path,
    tmp_path: Path,
) -> None:
    broker = mosquitto_factory(tls=True, require_certificate=True, allow_anonymous=False)
    device = broker.client_cert("bellad")
    watcher = broker.client_cert("observer")
    sub = Subscriber(broker.endpoint(tls=True, client_cert=watcher), [AVAILABILITY]).start()
    cfg = secure_config(broker, silence, username="")
    cfg["mqtt"]["tls"] |= {"cert_file": str(device.cert), "key_file": str(device.key)}
    try:
        with DaemonProcess(make_config(cfg), tmp_path) as daemon:
            daemon.start()
            assert sub.wait_for(AVAILABILITY, timeout=60)[0].text == "online"
            assert daemon.stop() == 0
    finally:
        sub.close()


def test_an_unreadable_client_key_names_it(
    secure_mosquitto: Mosquitto, make_config: Callable[..., Path], silence: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "client.key"
    cfg = secure_config(secure_mosquitto, silence)
    cfg["mqtt"]["tls"] |= {"cert_file": str(tmp_path / "client.crt"), "key_file": str(missing)}
    (tmp_path / "client.crt").write_text("not a certificate\n")
    with DaemonProcess(make_config(cfg), tmp_path) as daemon:
        daemon.start()
        assert daemon.wait(60) == 78
    errors = [line for line in daemon.log.splitlines() if line.startswith("bellad: error:")]
    assert errors == [
        f"bellad: error: mqtt.tls.key_file = '{missing}': cannot read it: No such file or directory"
    ]
