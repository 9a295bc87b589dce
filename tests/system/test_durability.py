"""Nothing is lost: broker down at start, broker killed mid-run, daemon killed with a backlog.

Each test runs the real daemon on real recordings and a real Mosquitto, and
compares what a subscriber received (de-duplicated by id) with what the daemon
produced (its JSON lines on stdout): every event, in order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import BrokerConfig, Mosquitto
from tests.support.daemon import DaemonProcess
from tests.support.mqtt_clients import Message, Subscriber
from tests.support.speech import cards, join_clips, write_wav
from tests.support.tools import wait_until

TOPIC = "bellad/testroom/transcript"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A persistent broker, not started: the test decides when it runs."""
    broker = Mosquitto(BrokerConfig(persistence=True))
    try:
        yield broker
    finally:
        broker.close()


def config_for(broker: Mosquitto, wav: Path, realtime: bool, flush_s: float) -> dict[str, Any]:
    return {
        "audio": {"source": "file", "file": str(wav), "realtime": realtime},
        # durability, not accuracy, is under test: the short clips need no 30 s encoder pass
        "transcribe": {"encode": "trimmed"},
        "output": {"stdout": "on"},
        "mqtt": {
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "flush_timeout_s": flush_s,
        },
    }


def produced(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """What the daemon transcribed, from its JSON lines on stdout."""
    return [json.loads(line) for line in daemon.out.splitlines() if line.strip()]


def received_ids(messages: list[Message]) -> list[str]:
    """Ids in order of first arrival (at-least-once delivery: repeats dropped)."""
    seen: dict[str, None] = {}
    for message in messages:
        if message.topic == TOPIC:
            seen.setdefault(json.loads(message.payload)["id"], None)
    return list(seen)


def speech_file(data: Path, tmp_path: Path, name: str, repeats: int, gap_s: float = 1.0) -> Path:
    audio, _ = join_clips(cards(data) * repeats, gap_s=gap_s)
    return write_wav(tmp_path / name, audio)


def outbox_depth(state_dir: Path) -> int:
    path = state_dir / "outbox.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.OperationalError:  # created, schema not written yet
            return 0


def test_broker_down_at_start(
    broker: Mosquitto, data: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    wav = speech_file(data, tmp_path, "speech.wav", repeats=1)
    config = make_config(config_for(broker, wav, realtime=True, flush_s=60))
    with DaemonProcess(config, tmp_path) as daemon:
        daemon.start()
        daemon.wait_log("utterance [0-9a-f]{32}: ", count=2, timeout=60)  # listening, no broker
        assert "MQTT: cannot connect to" in daemon.log
        broker.start()
        sub = Subscriber(broker.endpoint(), [TOPIC]).start()
        try:
            assert daemon.wait(120) == 0, daemon.log
            events = produced(daemon)
            assert len(events) == 5
            wait_until(lambda: len(received_ids(sub.messages)) >= 5, 30, "5 distinct events")
            assert received_ids(sub.messages) == [e["id"] for e in events]
        finally:
            sub.close()


def test_broker_killed_and_restarted_during_200_utterances(
    broker: Mosquitto, data: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    wav = speech_file(data, tmp_path, "long.wav", repeats=40, gap_s=0.8)  # 200 utterances
    broker.start()
    sub = Subscriber(broker.endpoint(), [TOPIC], client_id="durable-sub", clean=False).start()
    broker.save()  # the subscriber's session is on disk: it survives the crash
    config = make_config(config_for(broker, wav, realtime=False, flush_s=60))
    try:
        with DaemonProcess(config, tmp_path) as daemon:
            daemon.start()
            sub.wait_for(TOPIC, count=50, timeout=180)
            broker.kill()
            during_outage = len(produced(daemon))
            time.sleep(2.0)
            assert len(produced(daemon)) > during_outage  # it kept transcribing meanwhile
            broker.start()
            assert daemon.wait(300) == 0, daemon.log
        events = produced(daemon)
        assert len(events) == 200
        wait_until(lambda: len(received_ids(sub.messages)) >= 200, 60, "200 distinct events")
    finally:
        sub.close()
    assert received_ids(sub.messages) == [e["id"] for e in events]


def test_daemon_killed_with_a_backlog_then_restarted(
    broker: Mosquitto, data: Path, tmp_path: Path, make_config: Callable[..., Path]
) -> None:
    first = speech_file(data, tmp_path, "first.wav", repeats=1)
    second = write_wav(tmp_path / "second.wav", join_clips(cards(data)[:2])[0])
    state = tmp_path / "state"
    config_a = make_config(config_for(broker, first, realtime=False, flush_s=120), "a.toml")
    with DaemonProcess(config_a, tmp_path) as daemon:
        daemon.start()
        wait_until(lambda: outbox_depth(state) == 5, 60, "5 results in the outbox")
        daemon.kill()  # SIGKILL while it holds the backlog
        backlog = [e["id"] for e in produced(daemon)]
    assert len(backlog) == 5 and outbox_depth(state) == 5
    broker.start()
    sub = Subscriber(broker.endpoint(), [TOPIC]).start()
    config_b = make_config(config_for(broker, second, realtime=False, flush_s=30), "b.toml")
    try:
        with DaemonProcess(config_b, tmp_path) as daemon:
            daemon.runs = 10  # keep the first run's logs
            daemon.start()
            assert daemon.wait(120) == 0, daemon.log
            fresh = [e["id"] for e in produced(daemon)]
        assert len(fresh) == 2
        wait_until(lambda: len(received_ids(sub.messages)) >= 7, 30, "7 distinct events")
        assert received_ids(sub.messages) == backlog + fresh
        assert outbox_depth(state) == 0
    finally:
        sub.close()
