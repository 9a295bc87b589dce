"""The daemon's side of systemd's protocols, heard on a bound NOTIFY_SOCKET.

bellad captures from a real PulseAudio device through PyAudio; the watchdog
interval comes from ``WATCHDOG_USEC`` as systemd would set it.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tomli_w

from tests.support.daemon import DaemonProcess
from tests.support.notify import NotifySocket
from tests.support.pulse import PulseServer

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    with NotifySocket() as sock:
        yield sock


def mic_config(make_config: Callable[..., Path], **extra: object) -> Path:
    return make_config(
        {"audio": {"source": "microphone", "device": "pulse", "stall_timeout_s": 1.0}, **extra}
    )


def start(config: Path, tmp_path: Path, pulse: PulseServer, notify: NotifySocket) -> DaemonProcess:
    env = {**pulse.env, **notify.env, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    return DaemonProcess(config, tmp_path, env=env).start()


def test_ready_only_after_warm_up_and_audio_then_watchdog_cadence(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    with start(mic_config(make_config), tmp_path, pulse, notify) as daemon:
        ready_at, ready = notify.wait_for("READY", "1")[0]
        log_at_ready = daemon.log
        assert "whisper warm-up took" in log_at_ready
        assert "loaded sentiment model" in log_at_ready
        assert "capturing from microphone 'pulse'" in log_at_ready
        assert "listening" in ready["STATUS"]
        assert not [m for t, m in notify.messages if "WATCHDOG" in m and t < ready_at]
        time.sleep(3.0)
        pings = [t for t, _ in notify.having("WATCHDOG", "1")]
        assert len(pings) >= 5
        assert max(b - a for a, b in itertools.pairwise(pings)) < 0.8
        statuses = [m["STATUS"] for _, m in notify.having("STATUS")]
        assert statuses[0] == "loading models"
        assert daemon.stop() == 0


def test_no_watchdog_while_capture_is_stalled(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    with start(mic_config(make_config), tmp_path, pulse, notify) as daemon:
        notify.wait_for("READY", "1")
        notify.wait_for("WATCHDOG", "1", count=2)
        pulse.feeder.pause()  # the device stays open but delivers nothing
        paused = time.monotonic()
        daemon.wait_log("is stalled: no audio for", timeout=10)
        time.sleep(2.5)
        late = [t for t, _ in notify.having("WATCHDOG", "1") if t > paused + 1.2]
        assert late == []  # after the 1 s stall window, no ping at all
        assert "stalled" in notify.having("STATUS")[-1][1]["STATUS"]
        pulse.feeder.resume()
        resumed = time.monotonic()
        daemon.wait_log("delivers audio again", timeout=15)
        notify.wait_for("WATCHDOG", "1", count=len(notify.having("WATCHDOG", "1")) + 2)
        assert notify.having("WATCHDOG", "1")[-1][0] > resumed
        assert daemon.stop() == 0


def test_stopping_on_sigterm(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    with start(mic_config(make_config), tmp_path, pulse, notify) as daemon:
        notify.wait_for("READY", "1")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        stopping = notify.wait_for("STOPPING", "1", timeout=5)
        assert "finishing" in stopping[0][1]["STATUS"]


def test_reload_applies_a_change_and_keeps_the_old_config_when_invalid(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = mic_config(make_config)
    with start(config, tmp_path, pulse, notify) as daemon:
        notify.wait_for("READY", "1")
        text = config.read_text()
        config.write_text(text + "\n" + tomli_w.dumps({"pipeline": {"max_backlog": 3}}))
        daemon.signal(signal.SIGHUP)
        notify.wait_for("RELOADING", "1")
        daemon.wait_log("reload: applied pipeline.max_backlog")
        assert len(notify.wait_for("READY", "1", count=2)) == 2
        reloading_at = notify.having("RELOADING", "1")[0][0]
        assert notify.having("READY", "1")[1][0] > reloading_at
        assert "MONOTONIC_USEC" in notify.having("RELOADING", "1")[0][1]

        config.write_text(text.replace("[transcribe]", "[transcribe]\nbeam_size = 0", 1))
        daemon.signal(signal.SIGHUP)
        notify.wait_for("RELOADING", "1", count=2)
        line = daemon.wait_log("reload: keeping the running config")[0]
        assert "transcribe.beam_size = 0" in daemon.log
        assert "1 problem" in line
        notify.wait_for("READY", "1", count=3)
        count = len(notify.having("WATCHDOG", "1"))
        notify.wait_for("WATCHDOG", "1", count=count + 2)  # still alive and healthy
        assert daemon.proc is not None and daemon.proc.poll() is None

        config.write_text(text.replace('model = "', 'model = "other-', 1))
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("changed: restart bellad to apply")
        assert daemon.stop() == 0


def test_no_ready_until_the_microphone_delivers_audio(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    pulse.feeder.pause()  # the device exists but sends nothing yet
    with start(mic_config(make_config), tmp_path, pulse, notify) as daemon:
        daemon.wait_log("capturing from microphone 'pulse'", timeout=60)
        time.sleep(2.0)
        assert notify.having("READY") == []
        assert notify.having("WATCHDOG") == []
        pulse.feeder.resume()
        notify.wait_for("READY", "1", timeout=30)
        assert daemon.stop() == 0


def test_the_reload_command_waits_for_the_answer(
    pulse: PulseServer, notify: NotifySocket, make_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = mic_config(make_config)
    with start(config, tmp_path, pulse, notify) as daemon:
        notify.wait_for("READY", "1")
        assert daemon.proc is not None
        pid = str(daemon.proc.pid)
        text = config.read_text()

        def reload() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bellad", "--config", str(config), "reload", pid],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        config.write_text(text + "\n" + tomli_w.dumps({"pipeline": {"max_backlog": 5}}))
        applied = reload()
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "reload: applied pipeline.max_backlog"

        config.write_text(text + "\n[vad]\nframe_ms = 25\n")
        refused = reload()
        assert refused.returncode == 1
        assert refused.stderr.startswith("reload: keeping the running config: config file")
        assert "vad.frame_ms = 25: webrtcvad takes 10, 20 or 30 ms frames only" in refused.stderr
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
