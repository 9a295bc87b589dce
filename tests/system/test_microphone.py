"""``bellad run`` capturing a real PulseAudio device through PyAudio, in real time.

Real recordings are written into the device in real time with silence between
them; the daemon must emit one utterance per clip, on stdout and to a real
Mosquitto broker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.broker import Mosquitto
from tests.support.daemon import DaemonProcess
from tests.support.mqtt_clients import Subscriber
from tests.support.pulse import PulseServer
from tests.support.speech import cards, join_clips

TOPIC = "bellad/testroom/transcript"


def test_spoken_clips_become_utterances_on_stdout_and_mqtt(
    pulse: PulseServer,
    mosquitto: Mosquitto,
    subscriber: Callable[..., Subscriber],
    make_config: Callable[..., Path],
    data: Path,
    tmp_path: Path,
) -> None:
    clips = cards(data)[:3]
    audio, spans = join_clips(clips, gap_s=1.5, lead_s=0.5)
    sub = subscriber(mosquitto, TOPIC)
    config = make_config(
        {
            "audio": {"source": "microphone", "device": "pulse"},
            "output": {"stdout": "on"},
            "mqtt": {"enabled": True, "host": mosquitto.host, "port": mosquitto.port},
        }
    )
    with DaemonProcess(config, tmp_path, env=pulse.env) as daemon:
        daemon.start()
        daemon.wait_log("ready: listening on microphone 'pulse'", timeout=60)
        pulse.feeder.feed(audio)
        pulse.feeder.wait_drained(timeout=60)
        pulse.feeder.feed_silence(1.5)  # the hangover of the last clip
        received = sub.wait_for(TOPIC, count=3, timeout=30)
        assert daemon.stop() == 0
    lines = [json.loads(line) for line in daemon.out.splitlines() if line.strip()]
    assert len(lines) == 3, daemon.log
    assert [json.loads(m.payload)["id"] for m in received] == [e["id"] for e in lines]
    for event, (start, end) in zip(lines, spans, strict=True):
        assert event["offset_start_s"] is None  # a microphone has no input offsets
        assert event["text"]
        assert event["audio_s"] >= end - start  # the whole clip, pre-roll and hangover
    assert "capturing from microphone 'pulse' at 16000 Hz" in daemon.log


PLUGINS_CODE = """
import json, time, pyaudio
from bellad.microphone import PyAudioBackend, select_device

def plugins():
    maps = open("/proc/self/maps").read().split()
    return sorted({p.rsplit("/", 1)[-1] for p in maps if "libasound_module_pcm_" in p})

pa = pyaudio.PyAudio()
listing = plugins()
pa.terminate()
backend = PyAudioBackend()
after = plugins()
got = []
device = select_device(backend.devices(), "pulse")
stream = backend.open(device.index, 16000, 1, 480, lambda data, overflow: got.append(len(data)))
time.sleep(0.6)
capturing = plugins()
stream.close()
backend.close()
print(json.dumps({"listing": listing, "after": after, "capturing": capturing, "bytes": sum(got)}))
"""


def test_plugins_loaded_to_list_devices_are_unloaded_and_capture_works(
    pulse: PulseServer,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PLUGINS_CODE],
        env=os.environ | pulse.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    # listing the devices opens every PCM ALSA's configuration names (libasound2-plugins)
    assert "libasound_module_pcm_a52.so" in seen["listing"], seen
    assert seen["after"] == [], seen  # bellad's backend lets ALSA unload them at once
    assert seen["capturing"] == ["libasound_module_pcm_pulse.so"], seen  # only what it uses
    assert seen["bytes"] >= 16000  # and half a second of audio came through it
