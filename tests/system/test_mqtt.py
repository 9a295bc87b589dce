"""The MQTT contract with the real daemon and a real Mosquitto: topics, schemas, mute, HA."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from tests.support.broker import Mosquitto
from tests.support.daemon import DaemonProcess
from tests.support.mqtt_clients import Message, MQTTv5, Subscriber, publish
from tests.support.speech import cards, join_clips, write_wav

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
SITE = "testroom"
BASE = f"bellad/{SITE}"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())  # type: ignore[no-any-return]


def validate(message: Message, name: str) -> Any:
    text = message.payload.decode()
    value = text if name in ("availability", "speech") else json.loads(text)
    jsonschema.validate(value, schema(name))
    return value


@pytest.fixture
def speech_wav(data: Path, tmp_path: Path) -> Path:
    audio, _ = join_clips(cards(data)[:3], gap_s=1.5)
    return write_wav(tmp_path / "speech.wav", audio)


def mqtt_config(broker: Mosquitto, wav: Path, **audio: Any) -> dict[str, Any]:
    return {
        "audio": {"source": "file", "file": str(wav), "realtime": True, **audio},
        "mqtt": {
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "stats_interval_s": 1.0,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
            "hermes": {"enabled": True},
        },
    }


@pytest.fixture
def silent_config(mosquitto: Mosquitto, make_config: Callable[..., Path], tmp_path: Path) -> Path:
    """A config whose daemon loops 3 s of silence and publishes to ``mosquitto``."""
    silence = write_wav(tmp_path / "silence.wav", np.zeros(16_000 * 3, np.int16))
    return make_config(mqtt_config(mosquitto, silence, loop=True))


def test_every_topic_arrives_and_validates(
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    make_config: Callable[..., Path],
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(mosquitto, f"{BASE}/#", "homeassistant/#", "hermes/#")
    config = make_config(mqtt_config(mosquitto, speech_wav))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        assert daemon.wait(120) == 0, daemon.log
    topics = {m.topic for m in sub.messages}
    expected = {
        f"{BASE}/availability",
        f"{BASE}/transcript",
        f"{BASE}/speech",
        f"{BASE}/state",
        f"{BASE}/stats",
        f"homeassistant/device/bellad_{SITE}/config",
        "hermes/asr/textCaptured",
    }
    assert expected <= topics, topics
    names = {
        "availability": "availability",
        "transcript": "transcript",
        "speech": "speech",
        "state": "state",
        "stats": "stats",
        "config": "homeassistant-discovery",
        "textCaptured": "hermes-text-captured",
    }
    for message in sub.messages:
        validate(message, names[message.topic.rsplit("/", 1)[1]])
    availability = [m for m in sub.messages if m.topic.endswith("/availability")]
    assert [m.text for m in availability] == ["online", "offline"]
    transcripts = [json.loads(m.payload) for m in sub.messages if m.topic.endswith("/transcript")]
    assert len(transcripts) == 3
    assert [t["site"] for t in transcripts] == [SITE] * 3
    speech = [m.text for m in sub.messages if m.topic.endswith("/speech")]
    assert speech.count("ON") == 3 and speech[-1] == "OFF"
    state = json.loads(next(m.payload for m in sub.messages if m.topic.endswith("/state")))
    assert state["listening"] is True and state["models"]["whisper"]
    retained = Subscriber(mosquitto.endpoint(), [f"{BASE}/availability", f"{BASE}/state"]).start()
    try:
        got = retained.wait_for(lambda m: m.retain, count=2)
        assert {m.topic: m.text for m in got}[f"{BASE}/availability"] == "offline"
    finally:
        retained.close()


def test_mute_stops_transcription_shows_in_state_and_survives_restart(
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    make_config: Callable[..., Path],
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(mosquitto, f"{BASE}/#")
    config = make_config(mqtt_config(mosquitto, speech_wav, loop=True))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        sub.wait_for(f"{BASE}/transcript", timeout=60)
        publish(mosquitto.endpoint(), f"{BASE}/listening/set", "OFF")
        muted = sub.wait_for(lambda m: m.topic.endswith("/state") and b'"muted"' in m.payload)
        assert validate(muted[0], "state")["listening"] is False
        sub.clear()
        daemon.wait_log("listening off", timeout=10)
        before = daemon.log.count("utterance ")
        sub.wait_for(f"{BASE}/stats", count=6, timeout=20)  # six seconds of looping speech
        assert not [m for m in sub.messages if m.topic.endswith("/transcript")]
        assert daemon.log.count("utterance ") == before  # nothing was even transcribed
        assert daemon.stop() == 0
        sub.clear()
        daemon.start()  # the same state directory
        first_state = sub.wait_for(f"{BASE}/state", timeout=60)[0]
        assert json.loads(first_state.payload)["state"] == "muted"
        sub.wait_for(f"{BASE}/stats", count=5, timeout=20)
        assert not [m for m in sub.messages if m.topic.endswith("/transcript")]
        publish(mosquitto.endpoint(), f"{BASE}/listening/set", "ON")
        sub.wait_for(f"{BASE}/transcript", timeout=30)
        assert daemon.stop() == 0


def test_home_assistant_birth_sends_discovery_again(
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    silent_config: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(mosquitto, "homeassistant/device/#")
    with DaemonProcess(silent_config, tmp_path) as daemon:
        daemon.start()
        first = sub.wait_for(lambda m: not m.retain, timeout=60)
        payload = validate(first[0], "homeassistant-discovery")
        assert payload["availability"][0]["topic"] == f"{BASE}/availability"
        publish(mosquitto.endpoint(), "homeassistant/status", "online")
        again = sub.wait_for(lambda m: not m.retain, count=2, timeout=10)
        assert json.loads(again[1].payload) == payload
        assert daemon.stop() == 0


def test_listening_set_rejects_nonsense(
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    silent_config: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(mosquitto, f"{BASE}/state")
    with DaemonProcess(silent_config, tmp_path) as daemon:
        daemon.start()
        sub.wait_for(f"{BASE}/state", timeout=60)
        publish(mosquitto.endpoint(), f"{BASE}/listening/set", "sometimes")
        daemon.wait_log(r"listening/set: ignored payload b'sometimes' \(expected ON or OFF\)")
        assert json.loads(sub.messages[-1].payload)["listening"] is True
        assert daemon.stop() == 0


def test_mqtt5_delivers_and_reports_a_publish_the_acl_refuses(
    mosquitto_factory: Callable[..., Mosquitto],
    make_config: Callable[..., Path],
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    allowed = ["availability", "speech", "state", "stats", "listening/set"]
    acl = "\n".join(f"topic readwrite {BASE}/{t}" for t in allowed) + "\ntopic read #\n"
    broker = mosquitto_factory(acl=acl)
    sub = Subscriber(broker.endpoint(), [f"{BASE}/#"], protocol=MQTTv5).start()
    cfg = mqtt_config(broker, speech_wav)
    cfg["mqtt"] |= {"protocol": "5", "hermes": {"enabled": False}}
    try:
        with DaemonProcess(make_config(cfg), tmp_path) as daemon:
            daemon.start()
            assert daemon.wait(120) == 0, daemon.log
        assert next(m.text for m in sub.messages if m.topic.endswith("/availability")) == "online"
        assert not [m for m in sub.messages if m.topic.endswith("/transcript")]
        refusals = re.findall(r"the broker refused message \d+: (.*) \(check its ACL\)", daemon.log)
        assert len(refusals) == 3 and set(refusals) == {"Not authorized"}
    finally:
        sub.close()


def test_hermes_toggles_act_as_the_mute(
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    silent_config: Path,
    tmp_path: Path,
) -> None:
    sub = subscriber(mosquitto, f"{BASE}/state")
    with DaemonProcess(silent_config, tmp_path) as daemon:
        daemon.start()
        sub.wait_for(f"{BASE}/state", timeout=60)

        def listening() -> bool:
            return bool(json.loads(sub.messages[-1].payload)["listening"])

        publish(mosquitto.endpoint(), "hermes/asr/toggleOff", '{"siteId": "elsewhere"}')
        publish(mosquitto.endpoint(), "hermes/asr/toggleOff", f'{{"siteId": "{SITE}"}}')
        sub.wait_for(lambda m: b'"muted"' in m.payload, timeout=10)
        assert daemon.log.count("listening off by hermes/asr/toggleOff") == 1
        publish(mosquitto.endpoint(), "hermes/asr/toggleOn", "{}")  # no site: every site
        sub.wait_for(
            lambda m: b'"listening"' in m.payload and b'"state":"listening"' in m.payload,
            count=2,
            timeout=10,
        )
        assert listening()
        assert daemon.stop() == 0
