"""``bellad models`` end to end: the real CLI and hub client against a local fake hub.

No test touches the internet: :class:`tests.support.hub.FakeHub` serves the
repositories, laid out like the real ones and holding real models: the
generated test models of :mod:`bellad.testmodels` (a Whisper tiny model with
random weights, a small ONNX sentiment classifier). model.bin is larger than
one download chunk of the hub client, so that an interrupted download leaves a
partial file to resume.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import constants as hub_constants

from bellad.cli import AppContext
from bellad.cli_models import models
from bellad.config import SentimentConfig
from bellad.errors import ModelError
from bellad.modelstore import (
    CATALOG,
    MANIFEST_NAME,
    Manifest,
    ModelStore,
    check_model,
    enforce_offline,
    human_size,
    resolve_model,
)
from bellad.sentiment import OnnxSentiment
from bellad.testmodels import TestModels
from tests.support.hub import (
    SENTIMENT_REPO,
    WHISPER_REPO,
    Corrupt,
    Cut,
    Fail,
    FakeHub,
    Stall,
    catalog_repos,
)
from tests.support.tools import wait_until

CHUNK = hub_constants.DOWNLOAD_CHUNK_SIZE  # what http_get writes at a time
MiB = 1 << 20
WHISPER_FILES = {"model.bin", "config.json", "preprocessor_config.json", "tokenizer.json",
                 "vocabulary.json"}  # fmt: skip


@pytest.fixture(scope="session")
def repos(tmp_path_factory: pytest.TempPathFactory, test_models: TestModels) -> dict[str, Path]:
    """The catalog's tiny.en and distilbert-sst2 repositories, holding the generated models."""
    root = tmp_path_factory.mktemp("repos")
    return catalog_repos(root, test_models.whisper, test_models.sentiment)


def whisper_size(repos: dict[str, Path]) -> str:
    """The size of the tiny.en model bellad installs, as the CLI prints it."""
    return human_size(sum((repos[WHISPER_REPO] / name).stat().st_size for name in WHISPER_FILES))


@pytest.fixture
def hub(repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        for repo_id, folder in repos.items():
            fake.add_repo(repo_id, folder)
        # This process loaded the hub client before the fake hub had an address, so its own
        # default endpoint (for requests it makes by itself) is the public hub: point it here.
        monkeypatch.setattr(hub_constants, "ENDPOINT", fake.url)
        template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        yield fake


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def cli(hub: FakeHub | None, models_dir: Path, *args: str) -> Result:
    """``bellad models --models-dir DIR ARGS`` with HF_ENDPOINT pointing at the fake hub."""
    env = {"HF_ENDPOINT": hub.url} if hub is not None else {}
    return CliRunner().invoke(models, ["--models-dir", str(models_dir), *args], env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result) -> str:
    """The error line that ends a failed command (log lines may come before it)."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("bellad: error: ")]
    assert errors == lines[-1:], result.stderr
    return errors[0]


def flip_byte(path: Path, offset: int) -> None:
    """Damage ``path`` in place, keeping its size."""
    path.chmod(0o644)
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def partials(models_dir: Path) -> list[Path]:
    return sorted((models_dir / ".cache" / "downloads").glob("*.part"))


# -- pull ----------------------------------------------------------------------


def test_pull_installs_a_verified_model_with_its_manifest(
    hub: FakeHub, models_dir: Path, repos: dict[str, Path]
) -> None:
    out = ok(cli(hub, models_dir, "pull", "tiny.en"))
    assert "tiny.en: installed (whisper" in out

    folder = models_dir / "tiny.en"
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "whisper"
    assert manifest["source"] == {
        "type": "hub",
        "endpoint": hub.url,
        "repo": WHISPER_REPO,
        "revision": hub.repos[WHISPER_REPO].commit,
        "requested": "main",
    }
    assert set(manifest["files"]) == WHISPER_FILES  # README.md and .gitattributes not taken
    for name, meta in manifest["files"].items():
        served = hub.repos[WHISPER_REPO].files[name]
        assert (meta["size"], meta["sha256"]) == (served.size, served.sha256)
        assert (folder / name).read_bytes() == (repos[WHISPER_REPO] / name).read_bytes()
    assert not list(models_dir.glob(".staging-*"))
    assert not list((models_dir / ".cache" / "downloads").iterdir())

    assert "tiny.en: ok (5 files" in ok(cli(hub, models_dir, "verify", "tiny.en"))
    assert resolve_model("tiny.en", "whisper", models_dir) == folder

    # The folder is a whole model: faster-whisper loads it and decodes with it, offline.
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type="int8", local_files_only=True)
    assert not model.model.is_multilingual
    segments, info = model.transcribe(np.zeros(16_000, np.float32), language="en", beam_size=1)
    list(segments)
    assert info.duration == 1.0


def test_pull_of_the_sentiment_model_takes_the_quantized_onnx(
    hub: FakeHub, models_dir: Path, repos: dict[str, Path]
) -> None:
    ok(cli(hub, models_dir, "pull", "distilbert-sst2"))

    folder = models_dir / "distilbert-sst2"
    quantized = repos[SENTIMENT_REPO] / "onnx" / "model_quantized.onnx"
    assert (folder / "model.onnx").read_bytes() == quantized.read_bytes()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        MANIFEST_NAME,
        "config.json",
        "model.onnx",
        "tokenizer.json",
    ]
    fetched = {
        r.path.split("/resolve/")[1].split("/", 1)[1]
        for r in hub.requests
        if r.method == "GET" and "/resolve/" in r.path
    }
    assert fetched == {"onnx/model_quantized.onnx", "tokenizer.json", "config.json"}
    assert resolve_model("distilbert-sst2", "sentiment", models_dir) == folder

    scorer = OnnxSentiment(SentimentConfig(model="distilbert-sst2"), folder)
    assert scorer.labels == ["NEGATIVE", "POSITIVE"]
    assert -1 <= scorer.score("a wonderful, moving film").valence <= 1


def test_pull_of_an_intact_model_needs_no_network(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    hub.clear_log()

    assert "tiny.en: already installed" in ok(cli(hub, models_dir, "pull", "tiny.en"))
    assert hub.requests == []


def test_pull_with_a_revision_downloads_only_if_the_commit_moved(
    hub: FakeHub, models_dir: Path
) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    hub.clear_log()

    assert "already installed" in ok(cli(hub, models_dir, "pull", "--revision", "main", "tiny.en"))
    assert [r.path for r in hub.requests] == [f"/api/models/{WHISPER_REPO}/revision/main"]


def test_pull_into_a_dir_it_cannot_create_fails_in_one_line(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = one_line_error(cli(hub, tmp_path / "a-file" / "models", "pull", "tiny.en"))
    assert "cannot change the models dir" in line and "Not a directory" in line


def test_pull_points_the_hub_clients_own_requests_at_the_chosen_endpoint(
    hub: FakeHub, models_dir: Path
) -> None:
    # huggingface_hub reads HF_ENDPOINT once, when loaded, for requests it makes by itself.
    script = textwrap.dedent(
        """
        import sys
        from bellad.cli_models import models
        models(sys.argv[1:], standalone_mode=False)
        from huggingface_hub import constants
        print(constants.ENDPOINT)
        """
    )
    args = ["--models-dir", str(models_dir), "pull", "--endpoint", hub.url, "tiny.en"]
    env = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == hub.url


def test_pull_of_an_unknown_name_lists_the_known_ones(hub: FakeHub, models_dir: Path) -> None:
    line = one_line_error(cli(hub, models_dir, "pull", "huge"))
    assert (
        "'huge'" in line and "tiny.en" in line and "bellad models import PATH --name huge" in line
    )


# -- damage ------------------------------------------------------------------------


def test_a_damaged_file_fails_verify_naming_the_file(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    flip_byte(models_dir / "tiny.en" / "model.bin", 5_000_000)

    result = cli(hub, models_dir, "verify", "tiny.en")
    assert "tiny.en: FAILED: model.bin does not match its sha256" in result.stdout
    line = one_line_error(result)
    assert (
        "tiny.en" in line and "model.bin" in line and "bellad models pull --force tiny.en" in line
    )
    assert "damaged: model.bin" in ok(cli(hub, models_dir, "list"))


def test_resolve_model_reports_a_damaged_model_in_one_line(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    flip_byte(models_dir / "tiny.en" / "model.bin", 123)

    with pytest.raises(ModelError) as err:
        resolve_model("tiny.en", "whisper", models_dir)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"whisper model 'tiny.en' in {models_dir} is damaged (model.bin does not match its "
        f"sha256): run  bellad models pull --force tiny.en"
    )


@pytest.mark.parametrize(
    ("spec", "kind"), [("tiny.en", "whisper"), ("distilbert-sst2", "sentiment")]
)
def test_resolve_model_reports_a_missing_model_in_one_line(
    models_dir: Path, spec: str, kind: str
) -> None:
    with pytest.raises(ModelError) as err:
        resolve_model(spec, kind, models_dir)  # type: ignore[arg-type]
    assert str(err.value) == (
        f"{kind} model '{spec}' is not installed in {models_dir}: run  bellad models pull {spec}"
    )


def test_a_malformed_manifest_is_reported_not_raised(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    manifest = models_dir / "tiny.en" / MANIFEST_NAME
    data = json.loads(manifest.read_text())
    data["source"] = ["not", "a", "table"]
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(data))

    assert "unreadable manifest" in ok(cli(hub, models_dir, "list"))
    with pytest.raises(ModelError, match="has an unreadable manifest"):
        resolve_model("tiny.en", "whisper", models_dir)


def test_start_up_rehashes_only_the_files_that_changed(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    folder = models_dir / "tiny.en"
    manifest = Manifest.read(folder)
    assert check_model(folder, manifest, full=False).rehashed == ()  # stamped by the install

    os.utime(folder / "config.json")  # same bytes, new mtime
    assert check_model(folder, manifest, full=False).rehashed == ("config.json",)
    assert check_model(folder, manifest, full=False).rehashed == ()

    # Same size, damaged, and the old mtime put back (as cp -p or tar would): the ctime tells.
    model = folder / "model.bin"
    before = model.stat()
    flip_byte(model, 42)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    check = check_model(folder, manifest, full=False)
    assert check.rehashed == ("model.bin",)
    assert check.problems == ("model.bin does not match its sha256",)


# -- interrupted downloads and installs --------------------------------------------


def test_a_failed_pull_is_resumed_with_a_range_request(
    hub: FakeHub, models_dir: Path, repos: dict[str, Path]
) -> None:
    size = (repos[WHISPER_REPO] / "model.bin").stat().st_size
    # The connection drops mid-file; the hub client's own retry is refused.
    hub.add_fault("model.bin", Cut(at=CHUNK + MiB), Fail(503))

    line = one_line_error(cli(hub, models_dir, "pull", "tiny.en"))
    assert "model.bin" in line and "run  bellad models pull tiny.en  again" in line
    assert not (models_dir / "tiny.en").exists()
    [partial] = partials(models_dir)
    kept = partial.stat().st_size
    assert 0 < kept < size

    hub.clear_log()
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    [get] = hub.downloads("model.bin")
    assert (get.range, get.status, get.body_bytes) == (f"bytes={kept}-", 206, size - kept)
    assert partials(models_dir) == []
    ok(cli(hub, models_dir, "verify", "tiny.en"))


def test_a_killed_pull_is_resumed_with_a_range_request(
    hub: FakeHub, models_dir: Path, repos: dict[str, Path]
) -> None:
    size = (repos[WHISPER_REPO] / "model.bin").stat().st_size
    stall = Stall(at=CHUNK + MiB)
    hub.add_fault("model.bin", stall)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bellad.cli_models import models; models()",
         "--models-dir", str(models_dir), "pull", "tiny.en"],
        env={**os.environ, "HF_ENDPOINT": hub.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert stall.reached.wait(timeout=60), "the download never started"
        wait_until(
            lambda: bool(partials(models_dir)) and partials(models_dir)[0].stat().st_size > 0,
            30,
            "a partial download with bytes in it",
        )
    finally:
        proc.kill()
        proc.communicate()
        stall.release.set()
    # the stalled request has ended
    wait_until(lambda: len(hub.downloads("model.bin")) == 1, 30, "the stalled request's end")
    assert not (models_dir / "tiny.en").exists()
    kept = partials(models_dir)[0].stat().st_size

    hub.clear_log()
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    [get] = hub.downloads("model.bin")
    assert (get.range, get.status, get.body_bytes) == (f"bytes={kept}-", 206, size - kept)
    ok(cli(hub, models_dir, "verify", "tiny.en"))


def test_a_crash_before_the_final_rename_leaves_no_model(hub: FakeHub, models_dir: Path) -> None:
    crash = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from bellad.modelstore import ModelStore

        def die(stage):
            os.kill(os.getpid(), signal.SIGKILL)

        ModelStore(Path(sys.argv[1]), endpoint=sys.argv[2], on_staged=die).pull("tiny.en")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", crash, str(models_dir), hub.url], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    [staged] = models_dir.glob(".staging-tiny.en-*")  # complete, manifest included
    assert (staged / MANIFEST_NAME).is_file() and (staged / "model.bin").is_file()

    assert not (models_dir / "tiny.en").exists()
    assert "no models installed" in ok(cli(hub, models_dir, "list"))
    with pytest.raises(ModelError, match="is not installed"):
        resolve_model("tiny.en", "whisper", models_dir)

    hub.clear_log()
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    assert hub.downloads("model.bin") == []  # the verified download was kept in the cache
    assert not list(models_dir.glob(".staging-*"))
    assert "tiny.en: ok" in ok(cli(hub, models_dir, "verify"))


def test_leftovers_of_an_interrupted_replace_or_rm_are_sorted_out(
    hub: FakeHub, models_dir: Path
) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    # A replace that died between its two renames, and an rm that died before deleting.
    (models_dir / "tiny.en").rename(models_dir / ".replaced-tiny.en-0a1b2c3d")
    shutil.copytree(models_dir / ".replaced-tiny.en-0a1b2c3d", models_dir / ".removed-old-4e5f6a7b")
    hub.clear_log()

    assert "tiny.en: already installed" in ok(cli(hub, models_dir, "pull", "tiny.en"))
    assert hub.requests == []  # the replaced model was put back, intact
    assert sorted(p.name for p in models_dir.iterdir()) == [".cache", ".lock", "tiny.en"]


def test_a_byte_damaged_in_transit_is_refused(hub: FakeHub, models_dir: Path) -> None:
    hub.add_fault("model.bin", Corrupt(at=3_000_000))

    line = one_line_error(cli(hub, models_dir, "pull", "tiny.en"))
    assert "model.bin of model 'tiny.en' does not match the hub's sha256" in line
    assert not (models_dir / "tiny.en").exists()
    assert partials(models_dir) == []  # nothing damaged is kept to resume from

    hub.clear_faults()
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    ok(cli(hub, models_dir, "verify", "tiny.en"))


# -- import ------------------------------------------------------------------------


def test_import_of_a_folder_installed_by_bellad(
    hub: FakeHub, tmp_path: Path, repos: dict[str, Path]
) -> None:
    ok(cli(hub, tmp_path / "online", "pull", "tiny.en"))
    usb = tmp_path / "usb" / "tiny.en"
    shutil.copytree(tmp_path / "online" / "tiny.en", usb)

    device = tmp_path / "device"
    out = ok(cli(None, device, "import", str(usb)))
    size = whisper_size(repos)
    assert f"tiny.en: imported (whisper, 5 files, {size}, {WHISPER_REPO}@" in out
    original = Manifest.read(tmp_path / "online" / "tiny.en")
    imported = Manifest.read(device / "tiny.en")
    assert (imported.files, imported.source) == (original.files, original.source)
    assert imported.installed["via"] == "import"
    assert resolve_model("tiny.en", "whisper", device) == device / "tiny.en"

    # Importing the same model again (say, a provisioning run repeated) changes nothing.
    assert "tiny.en: already installed" in ok(cli(None, device, "import", str(usb)))
    assert Manifest.read(device / "tiny.en") == imported


def test_import_refuses_a_copy_that_differs_from_its_manifest(hub: FakeHub, tmp_path: Path) -> None:
    ok(cli(hub, tmp_path / "online", "pull", "tiny.en"))
    usb = tmp_path / "usb" / "tiny.en"
    shutil.copytree(tmp_path / "online" / "tiny.en", usb)
    flip_byte(usb / "model.bin", 77)

    line = one_line_error(cli(None, tmp_path / "device", "import", str(usb)))
    assert "model.bin of model 'tiny.en' does not match its manifest" in line
    assert not (tmp_path / "device" / "tiny.en").exists()
    assert not list((tmp_path / "device").glob(".staging-*"))


def _archive(folder: Path, dest: Path, fmt: str) -> Path:
    """``folder`` packed (as its own top-level folder) into ``dest.<fmt>``."""
    path = dest.with_name(f"{dest.name}.{fmt}")
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for file in sorted(folder.rglob("*")):
                zf.write(file, Path(folder.name) / file.relative_to(folder))
    else:
        with tarfile.open(path, "w:gz" if fmt == "tar.gz" else "w") as tf:
            tf.add(folder, arcname=folder.name)
    return path


@pytest.mark.parametrize("fmt", ["tar.gz", "tar", "zip"])
def test_import_of_an_archive_of_a_bare_whisper_folder(
    tmp_path: Path, fmt: str, test_models: TestModels
) -> None:
    bare = tmp_path / "converted"
    shutil.copytree(test_models.whisper, bare)
    (bare / "notes.txt").write_text("not a model file\n")
    archive = _archive(bare, tmp_path / "whisper-office", fmt)

    models_dir = tmp_path / "models"
    ok(cli(None, models_dir, "import", str(archive), "--name", "office"))
    manifest = Manifest.read(models_dir / "office")
    assert manifest.kind == "whisper"
    assert manifest.source == {"type": "import", "origin": str(archive.resolve())}
    assert {f.path for f in manifest.files} == WHISPER_FILES
    assert resolve_model("office", "whisper", models_dir) == models_dir / "office"
    assert not list(models_dir.glob(".staging-*"))

    # Without --name, the archive's name is the model's name.
    ok(cli(None, models_dir, "import", str(archive)))
    assert (models_dir / "whisper-office" / "model.bin").is_file()


def test_import_recognises_a_bare_sentiment_folder(tmp_path: Path, repos: dict[str, Path]) -> None:
    bare = tmp_path / "sst2"
    shutil.copytree(repos[SENTIMENT_REPO], bare)  # the ONNX export's layout
    models_dir = tmp_path / "models"

    out = ok(cli(None, models_dir, "import", str(bare)))
    assert "sst2: imported (sentiment, 4 files" in out  # tokenizer_config.json too
    installed = models_dir / "sst2"
    quantized = bare / "onnx" / "model_quantized.onnx"
    assert (installed / "model.onnx").read_bytes() == quantized.read_bytes()
    assert resolve_model("sst2", "sentiment", models_dir) == installed

    # The same folder again changes nothing (provisioning repeats it)...
    assert "sst2: already installed" in ok(cli(None, models_dir, "import", str(bare)))
    # ...a different model under the same name needs --force.
    (bare / "config.json").write_text((bare / "config.json").read_text().replace("}", " }", 1))
    line = one_line_error(cli(None, models_dir, "import", str(bare)))
    assert "'sst2' is already installed" in line and "--force" in line
    ok(cli(None, models_dir, "import", str(bare), "--force"))


def test_import_refuses_an_archive_that_escapes_its_folder(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        payload = tmp_path / "payload"
        payload.write_text("x")
        tf.add(payload, arcname="../outside.txt")

    line = one_line_error(cli(None, tmp_path / "models", "import", str(evil)))
    assert "unsafe path" in line
    assert not (tmp_path / "outside.txt").exists()


# -- list, rm ----------------------------------------------------------------------


def test_list_shows_installed_models(
    hub: FakeHub, models_dir: Path, repos: dict[str, Path]
) -> None:
    assert f"no models installed in {models_dir}" in ok(cli(hub, models_dir, "list"))
    ok(cli(hub, models_dir, "pull", "tiny.en", "distilbert-sst2"))

    lines = ok(cli(hub, models_dir, "list")).splitlines()
    assert lines[0].split() == ["NAME", "KIND", "SIZE", "SOURCE", "STATUS"]
    commit = hub.repos[WHISPER_REPO].commit[:7]
    assert lines[2].split() == [
        "tiny.en",
        "whisper",
        *whisper_size(repos).split(),
        f"{WHISPER_REPO}@{commit}",
        "ok",
    ]
    assert lines[1].split()[:2] == ["distilbert-sst2", "sentiment"]

    listed = json.loads(ok(cli(hub, models_dir, "list", "--json")))
    assert [(m["name"], m["kind"], m["status"]) for m in listed] == [
        ("distilbert-sst2", "sentiment", "ok"),
        ("tiny.en", "whisper", "ok"),
    ]
    available = ok(cli(hub, models_dir, "list", "--available"))
    assert all(name in available for name in CATALOG)


def test_rm_removes_a_model(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))

    assert "tiny.en: removed" in ok(cli(hub, models_dir, "rm", "tiny.en"))
    assert not (models_dir / "tiny.en").exists()
    assert not list(models_dir.glob(".trash-*"))
    line = one_line_error(cli(hub, models_dir, "rm", "tiny.en"))
    assert "'tiny.en' is not installed" in line
    assert "not a valid model name" in one_line_error(cli(hub, models_dir, "rm", "../etc"))


# -- ensure ----------------------------------------------------------------------------


@pytest.fixture
def named(make_config: Callable[..., Path], models_dir: Path) -> Callable[..., Path]:
    """A config naming models by name (tiny.en and distilbert-sst2 unless told otherwise)."""

    def write(whisper: str = "tiny.en", sentiment: str = "distilbert-sst2", **extra: Any) -> Path:
        return make_config(
            {
                "transcribe": {"model": whisper},
                "sentiment": {"model": sentiment, **extra},
                "models": {"dir": str(models_dir)},
            }
        )

    return write


def ensure(endpoint: str | None, config: Path) -> Result:
    """``bellad --config CONFIG models ensure``, in this process."""
    env = {"HF_ENDPOINT": endpoint} if endpoint is not None else {}
    app = AppContext(config, "info")
    return CliRunner().invoke(models, ["ensure", "-q"], obj=app, env=env)


@pytest.fixture
def dead_endpoint() -> str:
    """The address of a hub that is not there (nothing listens on the port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_ensure_pulls_what_the_config_names_and_then_needs_no_network(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path], repos: dict[str, Path]
) -> None:
    # As make run calls it: the real command line, in its own process.
    command = [sys.executable, "-m", "bellad", "--config", str(named()), "models", "ensure"]
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"tiny.en: installed (whisper, {whisper_size(repos)}" in first.stdout
    assert "distilbert-sst2: installed (sentiment" in first.stdout
    ok(cli(None, models_dir, "verify"))

    hub.clear_log()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"tiny.en: already installed (whisper, transcribe.model) in {models_dir / 'tiny.en'}",
        f"distilbert-sst2: already installed (sentiment, sentiment.model) in "
        f"{models_dir / 'distilbert-sst2'}",
    ]
    assert hub.requests == []


def test_ensure_leaves_builtin_folders_and_disabled_sentiment_alone(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path], test_models: TestModels
) -> None:
    folder = str(test_models.whisper)
    assert ok(ensure(hub.url, named(folder, "builtin"))).splitlines() == [
        f"{folder}: a folder, nothing to pull (transcribe.model)",
        "builtin: built into bellad, nothing to pull (sentiment.model)",
    ]
    out = ok(ensure(hub.url, named(folder, "distilbert-sst2", enabled=False)))
    assert "distilbert-sst2" not in out
    assert hub.requests == [] and not models_dir.exists()


def test_ensure_pulls_a_damaged_model_again(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path]
) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    flip_byte(models_dir / "tiny.en" / "model.bin", 1_000_000)

    assert "tiny.en: installed (whisper" in ok(ensure(hub.url, named(sentiment="builtin")))
    assert len(hub.downloads("model.bin")) == 2
    ok(cli(None, models_dir, "verify", "tiny.en"))


def test_ensure_without_a_network_says_how_to_import_and_that_works(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path], dead_endpoint: str, tmp_path: Path
) -> None:
    config = named(sentiment="builtin")
    line = one_line_error(ensure(dead_endpoint, config))
    assert line.startswith(
        f"bellad: error: cannot fetch whisper model 'tiny.en' (transcribe.model) from "
        f"{dead_endpoint} ("
    )
    assert line.endswith(
        "on a device with no internet, run  bellad models pull tiny.en  on a machine that has "
        "internet, copy the tiny.en folder over and run  bellad models import PATH --name tiny.en"
    )
    assert not (models_dir / "tiny.en").exists()

    # Done as it says: pulled elsewhere, copied over, imported; ensure is then content offline.
    ok(cli(hub, tmp_path / "online", "pull", "tiny.en"))
    usb = tmp_path / "usb" / "tiny.en"
    shutil.copytree(tmp_path / "online" / "tiny.en", usb)
    ok(cli(None, models_dir, "import", str(usb), "--name", "tiny.en"))
    assert "tiny.en: already installed" in ok(ensure(dead_endpoint, config))


def test_ensure_does_not_blame_the_network_for_a_local_failure(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path]
) -> None:
    models_dir.mkdir()
    (models_dir / ".cache").write_text("")  # where the downloads go is not a folder
    line = one_line_error(ensure(hub.url, named(sentiment="builtin")))
    assert "Not a directory" in line and "tiny.en" in line
    assert "cannot fetch" not in line and "no internet" not in line


def test_ensure_of_names_the_catalog_cannot_provide(
    hub: FakeHub, models_dir: Path, named: Callable[..., Path], test_models: TestModels
) -> None:
    line = one_line_error(ensure(hub.url, named("office", "builtin")))
    assert line == (
        f"bellad: error: whisper model 'office' is not installed in {models_dir}: "
        f"run  bellad models import PATH --name office"
    )
    ok(cli(None, models_dir, "import", str(test_models.whisper), "--name", "office"))
    assert "office: already installed" in ok(ensure(hub.url, named("office", "builtin")))

    line = one_line_error(ensure(hub.url, named("distilbert-sst2", "builtin")))
    assert "transcribe.model names 'distilbert-sst2', which is a sentiment model" in line
    assert hub.requests == []


def test_ensure_needs_the_config(models_dir: Path) -> None:
    result = CliRunner().invoke(models, ["--models-dir", str(models_dir), "ensure"])
    assert result.exit_code == 2 and "bellad --config FILE models" in result.output


# -- resolution ----------------------------------------------------------------------


def test_resolve_model_by_path(
    hub: FakeHub, models_dir: Path, tmp_path: Path, test_models: TestModels
) -> None:
    ok(cli(hub, models_dir, "pull", "tiny.en"))
    assert (
        resolve_model(str(models_dir / "tiny.en"), "whisper", models_dir) == models_dir / "tiny.en"
    )
    bare = test_models.whisper  # no manifest: accepted, unchecked
    assert resolve_model(str(bare), "whisper", models_dir) == bare

    with pytest.raises(ModelError) as err:
        resolve_model(str(tmp_path / "nowhere"), "whisper", models_dir)
    assert str(err.value) == (
        f"whisper model folder {tmp_path / 'nowhere'} does not exist: fix the path, "
        f"or install one with  bellad models pull tiny.en"
    )


def test_resolve_model_refuses_the_wrong_kind(hub: FakeHub, models_dir: Path) -> None:
    ok(cli(hub, models_dir, "pull", "distilbert-sst2"))
    with pytest.raises(ModelError, match="is a sentiment model, not a whisper model"):
        resolve_model("distilbert-sst2", "whisper", models_dir)


def test_resolve_model_builtin(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="there is no built-in whisper model"):
        resolve_model("builtin", "whisper", models_dir)
    from bellad.modelstore import builtin_sentiment_dir, missing_files

    builtin = builtin_sentiment_dir()
    assert builtin.parts[-3:] == ("bellad", "data", "sentiment")
    assert not missing_files("sentiment", builtin)
    assert resolve_model("builtin", "sentiment", models_dir) == builtin


def test_a_damaged_package_names_the_builtin_model_and_the_reinstall(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bellad.modelstore.resolve as resolve

    partial = tmp_path / "sentiment"
    partial.mkdir()
    shutil.copy(resolve.builtin_sentiment_dir() / "config.json", partial)
    monkeypatch.setattr(resolve, "builtin_sentiment_dir", lambda: partial)
    with pytest.raises(ModelError) as err:
        resolve_model("builtin", "sentiment", models_dir)
    message = str(err.value)
    assert "built-in sentiment model is missing" in message and "model.onnx" in message
    assert "pip install --force-reinstall bellad" in message


# -- offline mode, and the fake hub itself --------------------------------------------


def test_enforce_offline_stops_the_hub_client(
    hub: FakeHub, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything enforce_offline changes is put back after the test.
    for var in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(var, os.environ.get(var, "0"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_TELEMETRY", False)

    enforce_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hub_constants.HF_HUB_OFFLINE
    with pytest.raises(ModelError, match="offline mode"):
        ModelStore(models_dir, endpoint=hub.url).pull("tiny.en")
    assert hub.requests == []


def test_enforce_offline_before_the_hub_client_is_imported(hub: FakeHub, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from bellad.modelstore import enforce_offline
        assert "huggingface_hub" not in sys.modules
        enforce_offline()
        from huggingface_hub import hf_hub_download
        try:
            hf_hub_download(sys.argv[2], "config.json", endpoint=sys.argv[1], cache_dir=sys.argv[3])
        except Exception as exc:
            print(type(exc).__name__)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, hub.url, WHISPER_REPO, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
    )
    assert proc.stdout.strip() == "LocalEntryNotFoundError", proc.stderr
    assert hub.requests == []


def test_the_catalog_uses_the_repositories_faster_whisper_knows() -> None:
    from faster_whisper.utils import _MODELS

    whisper = {e.name: e.repo_id for e in CATALOG.values() if e.kind == "whisper"}
    assert {"tiny", "tiny.en", "base", "base.en", "small", "small.en"} <= set(whisper)
    assert whisper == {name: _MODELS[name] for name in whisper}


def test_the_fake_hub_serves_the_hub_clients_own_snapshot_download(
    hub: FakeHub, tmp_path: Path, repos: dict[str, Path]
) -> None:
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(WHISPER_REPO, endpoint=hub.url, cache_dir=tmp_path))
    for name in WHISPER_FILES:
        assert (path / name).read_bytes() == (repos[WHISPER_REPO] / name).read_bytes()
