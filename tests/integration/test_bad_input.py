"""Bad input: one clear line naming what is wrong, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_bellad


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("bellad: error:")]


def test_missing_model_folder(make_config: Callable[..., Path], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    config = make_config({"transcribe": {"model": str(missing)}})
    proc = run_bellad("--config", str(config), "transcribe", "-")
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert "whisper model" in line and str(missing) in line


def test_corrupt_wav(make_config: Callable[..., Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00" + bytes(40))
    proc = run_bellad("--config", str(make_config()), "transcribe", str(bad))
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert line.startswith(f"bellad: error: audio file {bad}: ")


def test_unknown_device_name(make_config: Callable[..., Path]) -> None:
    config = make_config({"audio": {"device": "No Such Microphone 9000"}})
    proc = run_bellad("--config", str(config), "run", timeout=120)
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert "audio.device = 'No Such Microphone 9000'" in line


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_config_with_wrong_types(tmp_path: Path, command: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[vad]\nframe_ms = "thirty"\n[mqtt]\nport = true\n')
    proc = run_bellad("--config", str(config), command)
    assert proc.returncode == (1 if command == "check-config" else 78)
    assert "Traceback" not in proc.stderr
    assert f"config file {config}: 2 problems:" in proc.stderr
    assert "vad.frame_ms = 'thirty': Input should be a valid integer" in proc.stderr
    assert "mqtt.port = True: Input should be a valid integer" in proc.stderr


def test_check_config_accepts_the_shipped_file() -> None:
    proc = run_bellad("--config", "config/bellad.toml", "check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "config/bellad.toml: valid"


def test_missing_config_file(tmp_path: Path) -> None:
    proc = run_bellad("--config", str(tmp_path / "nope.toml"), "run")
    assert proc.returncode == 78
    (line,) = error_lines(proc)
    assert "nope.toml: cannot read it" in line
