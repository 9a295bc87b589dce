"""``bellad run`` with a model missing or damaged: one line with the fix, exit 78, no traceback.

Each case starts the real daemon in its own process with a config naming the
model by name in a models dir of its own, checks what it prints, runs the
command the error names (as ``bellad --config CONFIG <command>``), and starts
the daemon again on a recording to see that the command fixed it. Models come
from :mod:`bellad.testmodels`; a pull fetches them from the fake hub, which the
daemon itself never calls.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bellad.testmodels import TestModels
from tests.integration.test_models import flip_byte
from tests.support.hub import FakeHub, catalog_repos

EX_CONFIG = 78

# kind -> (config section, catalog name, the file to damage)
MODELS = {
    "whisper": ("transcribe", "tiny.en", "model.bin"),
    "sentiment": ("sentiment", "distilbert-sst2", "model.onnx"),
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, test_models: TestModels) -> Iterator[FakeHub]:
    """The catalog's repositories, serving the generated models."""
    root = tmp_path_factory.mktemp("repos")
    repos = catalog_repos(root, test_models.whisper, test_models.sentiment)
    with FakeHub() as fake:
        for repo_id, folder in repos.items():
            fake.add_repo(repo_id, folder)
        yield fake


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture(params=list(MODELS))
def kind(request: pytest.FixtureRequest) -> str:
    """The kind of model under test: each test runs for both."""
    param: str = request.param
    return param


@pytest.fixture
def config(make_config: Callable[..., Path], models_dir: Path, data: Path, kind: str) -> Path:
    """The generated models by path, but for the kind under test, named by its catalog name."""
    section, name, _ = MODELS[kind]
    return make_config(
        {
            section: {"model": name},
            "models": {"dir": str(models_dir)},
            "audio": {
                "source": "file",
                "file": str(data / "audio/ljspeech/LJ001-0002.wav"),
                "realtime": False,
            },
            "output": {"stdout": "on"},
        }
    )


def bellad(config: Path, hub: FakeHub, *args: str) -> subprocess.CompletedProcess[str]:
    """``bellad --config CONFIG ARGS`` in its own process, with HF_ENDPOINT at the fake hub."""
    return subprocess.run(
        [sys.executable, "-m", "bellad", "--config", str(config), *args],
        env={**os.environ, "HF_ENDPOINT": hub.url},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def refused_start(config: Path, hub: FakeHub) -> str:
    """Start the daemon, see it refuse with one error line, and return that line."""
    hub.clear_log()
    proc = bellad(config, hub, "run")
    assert proc.returncode == EX_CONFIG, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bellad: error:")]
    assert errors == proc.stderr.strip().splitlines()[-1:], proc.stderr
    assert proc.stdout == ""
    assert hub.requests == []  # the daemon never reaches for the hub, not even for a fix
    return errors[0]


def run_the_fix(line: str, config: Path, hub: FakeHub) -> None:
    """Run exactly the command that ``line`` names (after ``run``): it names the config."""
    command = shlex.split(line.split(": run  ", 1)[1])
    assert command[:4] == ["bellad", "--config", str(config), "models"], line
    proc = subprocess.run(
        [sys.executable, "-m", *command],
        env={**os.environ, "HF_ENDPOINT": hub.url},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def starts(config: Path, hub: FakeHub, kind: str) -> None:
    """The daemon starts, transcribes the recording with the model, and ends with it."""
    proc = bellad(config, hub, "run")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert results and results[0]["models"][kind] == MODELS[kind][1]


def test_a_missing_model_stops_the_start_with_the_pull_that_fixes_it(
    kind: str, config: Path, hub: FakeHub, models_dir: Path
) -> None:
    name = MODELS[kind][1]

    line = refused_start(config, hub)
    assert line == (
        f"bellad: error: {kind} model {name!r} is not installed in {models_dir}: "
        f"run  bellad --config {config} models pull {name}"
    )
    run_the_fix(line, config, hub)
    starts(config, hub, kind)


def test_a_damaged_model_stops_the_start_with_the_import_that_fixes_it(
    kind: str, config: Path, hub: FakeHub, models_dir: Path, test_models: TestModels
) -> None:
    _, name, damaged = MODELS[kind]
    source = test_models.whisper if kind == "whisper" else test_models.sentiment
    imported = bellad(config, hub, "models", "import", str(source), "--name", name)
    assert imported.returncode == 0, imported.stderr
    size = (models_dir / name / damaged).stat().st_size
    flip_byte(models_dir / name / damaged, size // 2)  # same size, one byte changed
    assert (models_dir / name / damaged).stat().st_size == size

    line = refused_start(config, hub)
    assert line == (
        f"bellad: error: {kind} model {name!r} in {models_dir} is damaged ({damaged} does not "
        f"match its sha256): run  bellad --config {config} models import {source} --name {name} "
        "--force"
    )
    run_the_fix(line, config, hub)
    starts(config, hub, kind)
