"""Shared fixtures: the data folder, generated test models, config files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.support.plugin"]


def data_dir() -> Path:
    """``$BELLAD_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    path = Path(os.environ.get("BELLAD_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "audio" / "manifest.tsv").is_file():
        pytest.fail(f"test data not found in {path}: set BELLAD_DATA_DIR to the data folder")
    return path


@pytest.fixture(scope="session")
def data() -> Path:
    return data_dir()


@pytest.fixture(scope="session")
def test_models() -> Any:
    """The generated Whisper (tiny architecture, random weights) and sentiment models."""
    from bellad.testmodels import ensure_test_models

    return ensure_test_models()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


@pytest.fixture
def make_config(tmp_path: Path, test_models: Any) -> Callable[..., Path]:
    """Write a config that uses the generated models; sections given override it."""

    def write(extra: dict[str, Any] | None = None, name: str = "bellad.toml") -> Path:
        base = {
            "service": {"site": "testroom", "state_dir": str(tmp_path / "state")},
            "transcribe": {
                "model": str(test_models.whisper),
                "threads": 2,
                "max_new_tokens": 24,
                "guard": {"enabled": False},
            },
            "sentiment": {"model": str(test_models.sentiment)},
            "mqtt": {"enabled": False},
        }
        path = tmp_path / name
        path.write_text(tomli_w.dumps(merge(base, extra or {})))
        return path

    return write
