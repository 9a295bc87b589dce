"""Every config rule, and the text of its error."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bellad.config import CHECKOUT_CONFIG, Config, Section, load_config, parse_config
from bellad.errors import ConfigError


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value).splitlines()[1:]


def one_problem(data: dict[str, Any]) -> str:
    found = problems(data)
    assert len(found) == 1, found
    return found[0].strip()


def test_empty_config_is_all_defaults() -> None:
    cfg = parse_config({})
    assert cfg.vad.frame_ms == 30
    assert cfg.transcribe.model == "tiny.en"
    assert cfg.sentiment.model == "builtin"
    assert cfg.models_dir == cfg.service.state_dir / "models"


def test_shipped_config_equals_the_defaults() -> None:
    shipped = load_config(CHECKOUT_CONFIG)
    assert shipped.model_dump() == Config().model_dump()


def test_shipped_config_names_every_key() -> None:
    text = CHECKOUT_CONFIG.read_text()

    def check(model: type[Section], path: str) -> None:
        for key, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, Section):
                assert f"\n[{path}{key}]\n" in text, f"[{path}{key}] not in the file"
                check(kind, f"{path}{key}.")
            else:
                assert re.search(rf"^#? ?{key} = ", text, re.M), f"{path}{key} not in the file"

    check(Config, "")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"vad": {"frame_ms": 25}}, "vad.frame_ms = 25: webrtcvad takes 10, 20 or 30 ms frames"),
        ({"vad": {"aggressiveness": 4}}, "vad.aggressiveness = 4: Input should be less than"),
        ({"vad": {"hangover_ms": 5}}, "vad.hangover_ms = 5: Input should be greater than"),
        ({"vad": {"frame_ms": 30, "start_window_ms": 20}}, "vad: start_window_ms must be at least"),
        ({"vad": {"cut_search_ms": 12000}}, "vad: cut_search_ms must be under half"),
        (
            {"vad": {"min_speech_ms": 10000, "max_utterance_s": 9}},
            "vad: min_speech_ms must be under",
        ),
        ({"vad": {"start_ratio": 0}}, "vad.start_ratio = 0: Input should be greater than 0"),
        ({"vad": {"max_utterance_s": 31}}, "vad.max_utterance_s = 31: Input should be less"),
        ({"service": {"site": "a/b"}}, "service.site = 'a/b': a site id holds"),
        ({"service": {"site": "hall+"}}, "service.site = 'hall+': a site id holds"),
        ({"service": {"site": "#"}}, "service.site = '#': a site id holds"),
        ({"service": {"site": ""}}, "service.site = '': a site id holds"),
        ({"audio": {"source": "file"}}, "audio: source = 'file' needs audio.file"),
        ({"audio": {"source": "line-in"}}, "audio.source = 'line-in': Input should be"),
        ({"audio": {"device": -1}}, "audio.device = -1: a device index is 0 or more"),
        ({"audio": {"reopen_min_s": 9, "reopen_max_s": 2}}, "audio: reopen_min_s must not"),
        ({"audio": {"channels": "two"}}, "audio.channels = 'two': Input should be a valid integer"),
        ({"transcribe": {"language": "xx"}}, "transcribe.language = 'xx': not a Whisper language"),
        (
            {"transcribe": {"model": "base.en", "language": "de"}},
            "transcribe: model 'base.en' is English-only",
        ),
        ({"transcribe": {"beam_size": 0}}, "transcribe.beam_size = 0: Input should be greater"),
        ({"transcribe": {"best_of": 3}}, "transcribe: best_of > 1 only matters"),
        ({"transcribe": {"temperature": [0.4, 0.2]}}, "transcribe.temperature = [0.4, 0.2]: temp"),
        (
            {"transcribe": {"device": "cpu", "compute_type": "float16"}},
            "transcribe: compute_type 'float16' needs device 'cuda'",
        ),
        ({"transcribe": {"guard": {"action": "hide"}}}, "transcribe.guard.action = 'hide': Input"),
        (
            {"transcribe": {"guard": {"no_speech_threshold": 2}}},
            "transcribe.guard.no_speech_threshold = 2: Input should be less than or equal to 1",
        ),
        ({"sentiment": {"threads": 0}}, "sentiment.threads = 0: Input should be greater"),
        ({"pipeline": {"overflow": "block"}}, "pipeline.overflow = 'block': Input should be"),
        ({"pipeline": {"max_backlog": 0}}, "pipeline.max_backlog = 0: Input should be greater"),
        ({"mqtt": {"port": 70000}}, "mqtt.port = 70000: Input should be less than or equal"),
        ({"mqtt": {"prefix": "home/#"}}, "mqtt.prefix = 'home/#': a topic prefix has no"),
        ({"output": {"stdout": "yes"}}, "output.stdout = 'yes': Input should be"),
        ({"mqtt": {"port": True}}, "mqtt.port = True: Input should be a valid integer"),
        ({"vad": {"end_ratio": "0.1"}}, "vad.end_ratio = '0.1': Input should be a valid number"),
        ({"mqtt": {"enabled": "yes"}}, "mqtt.enabled = 'yes': Input should be a valid boolean"),
        ({"audio": {"device": True}}, "audio.device = True: a device is an index (a number)"),
        ({"audio": {"device": 1.5}}, "audio.device = 1.5: a device is an index (a number)"),
        ({"vad": {"frame": 30}}, "vad.frame: unknown key"),
        ({"microphone": {}}, "microphone: unknown key"),
        ({"vad": 3}, "vad = 3: Input should be a valid dictionary"),
    ],
)
def test_rule_and_its_error(data: dict[str, Any], expected: str) -> None:
    assert one_problem(data).startswith(expected)


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        {"vad": {"frame_ms": 15, "bogus": 1}, "service": {"site": "x/y"}, "mqtt": {"port": 0}}
    )
    assert len(found) == 4
    keys = sorted(line.split(" ")[2].rstrip(":") for line in found)
    assert keys == ["mqtt.port", "service.site", "vad.bogus", "vad.frame_ms"]


def test_header_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[vad]\nframe_ms = 25\n")
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(path))}: 1 problem:"):
        load_config(path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[vad]\nframe_ms = \n")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML: .*line 2"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: cannot read it: No such file"):
        load_config(tmp_path / "nope.toml")


def test_default_site_is_a_valid_site_id() -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", Config().service.site)


def test_state_dir_follows_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/bellad")
    assert Config().service.state_dir == Path("/var/lib/bellad")
    assert Config().models_dir == Path("/var/lib/bellad/models")


def test_values_are_typed() -> None:
    data = tomllib.loads('[audio]\ndevice = "USB"\n[transcribe]\ntemperature = [0.0, 0.2]\n')
    cfg = parse_config(data)
    assert cfg.audio.device == "USB"
    assert cfg.transcribe.temperature == (0.0, 0.2)


def test_the_system_config_means_the_service_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert parse_config({}).service.state_dir == tmp_path / "xdg" / "bellad"
    assert parse_config({}, system=True).service.state_dir == Path("/var/lib/bellad")
    assert parse_config({"service": {"room": "Hall"}}, system=True).models_dir == Path(
        "/var/lib/bellad/models"
    )
    explicit = {"service": {"state_dir": "/srv/bellad"}}
    assert parse_config(explicit, system=True).service.state_dir == Path("/srv/bellad")
    monkeypatch.setenv("STATE_DIRECTORY", "/run/state/bellad")
    assert parse_config({}, system=True).service.state_dir == Path("/run/state/bellad")
