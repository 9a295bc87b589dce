"""Topic names, payload builders, Home Assistant discovery, Hermes, reload planning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bellad.config import Config, HomeAssistantConfig
from bellad.contract import (
    Topics,
    parse_listening,
    percentile,
    stamp_published,
    summary,
    transcript_payload,
)
from bellad.events import Result, Sentiment, Transcript, Utterance
from bellad.hermes import text_captured, toggle_applies
from bellad.homeassistant import discovery_payload, discovery_topic
from bellad.reload import effective, plan_reload
from bellad.service import ListeningStore


def result() -> Result:
    utt = Utterance(np.zeros(32_000, np.int16), "mic", 10.0, 1.7e9, 0, 11.5, 12.1, relative=False)
    tr = Transcript("turn on the light", "en", 0.99, -0.25, 0.02, 1.1, 5)
    return Result(utt, tr, Sentiment("POSITIVE", 0.9, 0.8), {"hangover": 0.6}, {"whisper": "x"})


def test_topics() -> None:
    t = Topics("bellad", "kitchen")
    assert t.availability == "bellad/kitchen/availability"
    assert t.listening_set == "bellad/kitchen/listening/set"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"ON", True), (b" off\n", False), (b"true", True), (b"0", False), (b"maybe", None)],
)
def test_parse_listening(payload: bytes, expected: bool | None) -> None:
    assert parse_listening(payload) is expected


def test_transcript_payload_and_stamp() -> None:
    payload = transcript_payload(result(), "kitchen", "Kitchen")
    assert payload["schema_version"] == 1
    assert payload["site"] == "kitchen" and payload["room"] == "Kitchen"
    assert payload["offset_start_s"] is None and "source" not in payload
    stamped = json.loads(stamp_published(json.dumps(payload).encode(), 100.0, now=100.25))
    assert stamped["published"] == "1970-01-01T00:01:40.250Z"
    assert stamped["latency_ms"] == {"hangover": 600.0, "outbox": 250.0}


def test_percentiles() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert summary([0.1, 0.2, 0.3], 1000) == {"median": 200.0, "p95": 290.0, "count": 3}


def test_discovery_ties_every_entity_to_availability() -> None:
    topics = Topics("bellad", "kitchen")
    payload = discovery_payload(topics, "kitchen", "Kitchen", "1.2.3", stats=True)
    assert discovery_topic(HomeAssistantConfig(), "kitchen") == (
        "homeassistant/device/bellad_kitchen/config"
    )
    assert payload["availability"][0]["topic"] == "bellad/kitchen/availability"
    assert payload["device"]["identifiers"] == ["bellad_kitchen"]
    assert payload["origin"]["name"] == "bellad"
    platforms = {c["platform"] for c in payload["components"].values()}
    assert {"binary_sensor", "event", "sensor", "switch"} <= platforms
    for key, component in payload["components"].items():
        assert component["unique_id"] == key
    transcript = payload["components"]["bellad_kitchen_transcript"]
    assert transcript["platform"] == "event"  # text is never a sensor state
    assert not any(
        c["platform"] == "sensor" and "value_json.text" in c.get("value_template", "")
        for c in payload["components"].values()
    )
    switch = payload["components"]["bellad_kitchen_listening"]
    assert switch["command_topic"] == "bellad/kitchen/listening/set"


def test_hermes() -> None:
    message = text_captured(result(), "kitchen")
    assert message["siteId"] == "kitchen"
    assert message["text"] == "turn on the light"
    assert message["seconds"] == 2.0
    assert 0 < message["likelihood"] <= 1
    assert toggle_applies(b'{"siteId": "kitchen", "reason": "ttsSay"}', "kitchen")
    assert toggle_applies(b"{}", "kitchen")
    assert not toggle_applies(b'{"siteId": "attic"}', "kitchen")


def test_reload_plan_splits_live_and_restart() -> None:
    old = Config()
    new = Config.model_validate(
        {
            "vad": {"hangover_ms": 800},
            "transcribe": {"beam_size": 2, "model": "base.en", "guard": {"action": "flag"}},
            "audio": {"device": "USB"},
        }
    )
    plan = plan_reload(old, new)
    assert plan.live == ("transcribe.beam_size", "transcribe.guard.action", "vad.hangover_ms")
    assert plan.restart == ("audio.device", "transcribe.model")
    running = effective(old, new)
    assert running.vad.hangover_ms == 800
    assert running.transcribe.guard.action == "flag"
    assert running.transcribe.model == "tiny.en"  # needs a restart: kept
    assert running.audio.device is None
    assert not plan_reload(old, Config()).changed


def test_listening_store(tmp_path: Path) -> None:
    store = ListeningStore(tmp_path / "state" / "listening.json")
    assert store.load() is True
    store.save(False)
    assert ListeningStore(tmp_path / "state" / "listening.json").load() is False
    (tmp_path / "state" / "listening.json").write_text("{broken")
    assert store.load() is True
