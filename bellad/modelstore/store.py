"""Model provisioning: pull, import, verify and resolve the models bellad runs.

A device gets its models once and never needs a network for them again. Every
installed model is a folder ``<models dir>/<name>/`` holding the model files
and ``bellad-manifest.json``: the kind, the size and sha256 of every file, and
where the files came from (hub repository and commit, or the imported path).

* :meth:`ModelStore.pull` downloads with ``huggingface_hub`` (model info,
  per-file metadata, ``http_get``), checks each file against the hub's own
  checksum (the sha256 of an LFS file, the git blob id of a plain one: the
  hub client checks sizes only), and keeps partial downloads under
  ``<models dir>/.cache/`` so that a later pull continues them with an HTTP
  Range request.
* Installs are atomic: files are staged in ``.staging-<name>-*`` next to the
  target, verified, described by a manifest, flushed to disk, then moved into
  place with one rename. A crash leaves a staging folder that the next command
  removes, never a half model under the model's name.
* :func:`resolve_model` is what the daemon calls at start: a missing or damaged
  model raises :class:`~bellad.errors.ModelError` naming the model and the
  command that fixes it. Files are hashed in full once; afterwards a stamp of
  (size, mtime, ctime, inode) per file, recorded after a successful check,
  lets start-up re-hash only the files that changed.
* :func:`enforce_offline` switches the hub client off for the daemon.

Nothing here imports ``huggingface_hub`` at module level, so the daemon can
call :func:`enforce_offline` before anything loads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import importlib.resources
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from bellad import __version__
from bellad.errors import ModelError

if TYPE_CHECKING:
    from huggingface_hub import HfFileMetadata

log = logging.getLogger(__name__)

Kind = Literal["whisper", "sentiment"]
KINDS: tuple[Kind, ...] = ("whisper", "sentiment")

MANIFEST_NAME = "bellad-manifest.json"
STAMPS_NAME = ".bellad-verified.json"
MANIFEST_FORMAT = "bellad-model/1"
CACHE_DIRNAME = ".cache"
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_MODEL: dict[Kind, str] = {"whisper": "tiny.en", "sentiment": "distilbert-sst2"}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_HASH_BUFFER = 1 << 20

# Each requirement is satisfied by any one of its globs (relative to the model folder).
_LAYOUT: dict[Kind, tuple[tuple[str, ...], ...]] = {
    "whisper": (
        ("model.bin",),
        ("config.json",),
        ("tokenizer.json",),
        ("vocabulary.json", "vocabulary.txt"),
    ),
    "sentiment": (("model.onnx",), ("tokenizer.json",), ("config.json",)),
}
# What a Whisper folder may hold (the files faster-whisper itself downloads).
_WHISPER_FILES = (
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
)
_SENTIMENT_EXTRAS = ("tokenizer.json", "config.json", "tokenizer_config.json")


# -- the catalog --------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """A model ``bellad models pull`` knows: where it lives and which files to take."""

    name: str
    kind: Kind
    repo_id: str
    files: tuple[str, ...]  # globs on repository paths
    summary: str
    rename: Mapping[str, str] = field(default_factory=dict)  # repository path -> local name

    def local_name(self, repo_path: str) -> str:
        return self.rename.get(repo_path, repo_path)


def _whisper(name: str, repo_id: str, summary: str) -> CatalogEntry:
    return CatalogEntry(name, "whisper", repo_id, _WHISPER_FILES, summary)


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        _whisper("tiny.en", "Systran/faster-whisper-tiny.en", "English, 39M params, 75 MB"),
        _whisper("tiny", "Systran/faster-whisper-tiny", "99 languages, 39M params, 75 MB"),
        _whisper("base.en", "Systran/faster-whisper-base.en", "English, 74M params, 145 MB"),
        _whisper("base", "Systran/faster-whisper-base", "99 languages, 74M params, 145 MB"),
        _whisper("small.en", "Systran/faster-whisper-small.en", "English, 244M params, 484 MB"),
        _whisper("small", "Systran/faster-whisper-small", "99 languages, 244M params, 484 MB"),
        _whisper(
            "distil-small.en", "Systran/faster-distil-whisper-small.en", "English, 166M, 332 MB"
        ),
        _whisper(
            "distil-medium.en", "Systran/faster-distil-whisper-medium.en", "English, 394M, 789 MB"
        ),
        _whisper(
            "distil-large-v2", "Systran/faster-distil-whisper-large-v2", "English, 756M, 1.5 GB"
        ),
        _whisper(
            "distil-large-v3", "Systran/faster-distil-whisper-large-v3", "English, 756M, 1.5 GB"
        ),
        _whisper(
            "distil-large-v3.5", "distil-whisper/distil-large-v3.5-ct2", "English, 756M, 1.5 GB"
        ),
        CatalogEntry(
            name="distilbert-sst2",
            kind="sentiment",
            repo_id="Xenova/distilbert-base-uncased-finetuned-sst-2-english",
            files=("onnx/model_quantized.onnx", "tokenizer.json", "config.json"),
            summary="DistilBERT SST-2, int8 ONNX, 68 MB",
            rename={"onnx/model_quantized.onnx": "model.onnx"},
        ),
    )
}


def catalog_entry(name: str) -> CatalogEntry:
    """The catalog entry for ``name``, or a :class:`ModelError` listing the known names."""
    entry = CATALOG.get(name)
    if entry is None:
        raise ModelError(
            f"bellad cannot pull a model named {name!r} (known: {', '.join(CATALOG)}): "
            f"copy its folder over and run  bellad models import PATH --name {name}"
        )
    return entry


# -- manifests ----------------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    """One file of a model: its path in the model folder, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What ``bellad-manifest.json`` records about an installed model."""

    name: str
    kind: Kind
    files: tuple[FileRecord, ...]
    source: Mapping[str, str]
    installed: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def origin(self) -> str:
        """Where the files came from, in a few words."""
        if self.source.get("type") == "hub":
            return f"{self.source.get('repo')}@{self.source.get('revision', '')[:7]}"
        return self.source.get("origin", "imported")

    def fix_command(self) -> str:
        """The command that reinstalls this model."""
        if self.source.get("type") == "hub" and self.name in CATALOG:
            return f"bellad models pull --force {self.name}"
        origin = self.installed.get("from") or self.source.get("origin") or "PATH"
        return f"bellad models import {origin} --name {self.name} --force"

    def to_json(self) -> str:
        data = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "kind": self.kind,
            "files": {f.path: {"size": f.size, "sha256": f.sha256} for f in self.files},
            "source": dict(self.source),
            "installed": dict(self.installed),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest in ``folder``; :class:`ValueError` or :class:`OSError` if unusable."""
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
        if data.get("kind") not in KINDS:
            raise ValueError(f"unknown kind {data.get('kind')!r}")
        files = tuple(
            FileRecord(_safe_relpath(path), int(meta["size"]), str(meta["sha256"]))
            for path, meta in sorted(data["files"].items())
        )
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            files=files,
            source={str(k): str(v) for k, v in data.get("source", {}).items()},
            installed={str(k): str(v) for k, v in data.get("installed", {}).items()},
        )


def _installed_now(via: str, origin: str | None = None) -> dict[str, str]:
    info = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "by": f"bellad {__version__}",
        "via": via,
    }
    if origin is not None:
        info["from"] = origin
    return info


# -- checking files -----------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """The outcome of checking a model folder against its manifest."""

    problems: tuple[str, ...]
    rehashed: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        extra = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.problems[0]}{extra}" if self.problems else "ok"


def hash_file(path: Path, *, git_blob: bool = False) -> tuple[str, str | None]:
    """``(sha256, git blob sha1 or None)`` of a file, read once."""
    sha256 = hashlib.sha256()
    sha1 = None
    if git_blob:
        header = b"blob %d\0" % path.stat().st_size
        sha1 = hashlib.sha1(header, usedforsecurity=False)
    buf = bytearray(_HASH_BUFFER)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha256.update(view[:n])
            if sha1 is not None:
                sha1.update(view[:n])
    return sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else None


def _stamp(st: os.stat_result) -> list[int]:
    # ctime too: cp -p, tar and touch -d can restore an mtime, nothing restores a ctime
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()


def _read_stamps(folder: Path) -> dict[str, list[int]]:
    try:
        data = json.loads((folder / STAMPS_NAME).read_text(encoding="utf-8"))
        if data.get("manifest_sha256") != _manifest_digest(folder):
            return {}
        return {str(k): list(v) for k, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_stamps(folder: Path, stamps: Mapping[str, list[int]]) -> None:
    """Record the stamps of files that just verified; best effort (the folder may be read-only)."""
    data = {"manifest_sha256": _manifest_digest(folder), "files": dict(stamps)}
    tmp = folder / f"{STAMPS_NAME}.{secrets.token_hex(4)}"
    try:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(folder / STAMPS_NAME)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning(
            "cannot record verification stamps in %s (%s): files will be hashed at every check",
            folder,
            exc.strerror or exc,
        )


def record_stamps(folder: Path, manifest: Manifest) -> None:
    """Stamp files just verified by an install, so the first start need not hash them."""
    _write_stamps(folder, {r.path: _stamp((folder / r.path).stat()) for r in manifest.files})


def check_model(folder: Path, manifest: Manifest, *, full: bool) -> Check:
    """Compare ``folder`` with its manifest.

    With ``full`` every file is hashed. Otherwise a file whose stamp matches
    the one recorded after its last successful check is taken as intact.
    """
    started = time.perf_counter()
    known = {} if full else _read_stamps(folder)
    problems: list[str] = []
    rehashed: list[str] = []
    fresh: dict[str, list[int]] = {}
    for rec in manifest.files:
        try:
            st = (folder / rec.path).stat()
            if st.st_size != rec.size:
                problems.append(f"{rec.path} has {st.st_size} bytes, the manifest says {rec.size}")
                continue
            if known.get(rec.path) != _stamp(st):
                rehashed.append(rec.path)
                if hash_file(folder / rec.path)[0] != rec.sha256:
                    problems.append(f"{rec.path} does not match its sha256")
                    continue
        except FileNotFoundError:
            problems.append(f"{rec.path} is missing")
            continue
        except OSError as exc:  # EIO from a failing SD card, EACCES...
            problems.append(f"{rec.path} cannot be read ({exc.strerror or exc})")
            continue
        fresh[rec.path] = _stamp(st)
    if not problems and (rehashed or full):
        _write_stamps(folder, fresh)
    return Check(tuple(problems), tuple(rehashed), time.perf_counter() - started)


def missing_files(kind: Kind, folder: Path) -> list[str]:
    """The files a ``kind`` model needs that ``folder`` lacks (``a or b`` for alternatives)."""
    return [
        " or ".join(globs)
        for globs in _LAYOUT[kind]
        if not any(p.is_file() for g in globs for p in folder.glob(g))
    ]


def detect_kind(folder: Path) -> Kind | None:
    """``whisper`` for a CTranslate2 Whisper folder, ``sentiment`` for an ONNX one."""
    if (folder / "model.bin").is_file():
        return "whisper"
    if _find_onnx(folder) is not None:
        return "sentiment"
    return None


def _find_onnx(folder: Path) -> Path | None:
    for preferred in ("model.onnx", "onnx/model_quantized.onnx"):
        if (folder / preferred).is_file():
            return folder / preferred
    found = sorted(folder.glob("*.onnx")) + sorted(folder.glob("onnx/*.onnx"))
    return found[0] if len(found) == 1 else None


# -- resolution for the daemon ------------------------------------------------


def builtin_sentiment_dir() -> Path:
    """Where the package's own sentiment model lives (``bellad/data/sentiment``)."""
    ref = importlib.resources.files("bellad").joinpath("data", "sentiment")
    return Path(str(ref))


def resolve_model(spec: str, kind: Kind, models_dir: Path) -> Path:
    """The folder of the ``kind`` model named by ``spec``, checked.

    ``spec`` is an installed name (``tiny.en``), a path to a model folder, or
    for sentiment ``builtin``. Raises :class:`ModelError` (one line naming the
    model and the fixing command) if the model is missing or damaged.
    """
    if spec == "builtin":
        return _resolve_builtin(kind)
    if "/" in spec or spec.startswith((".", "~")):
        return _resolve_path(Path(spec).expanduser(), kind)
    if not _NAME.fullmatch(spec):
        raise ModelError(f"{kind} model {spec!r} is neither a model name nor a path")
    folder = models_dir / spec
    if not folder.is_dir():
        fix = (
            f"bellad models pull {spec}"
            if spec in CATALOG and CATALOG[spec].kind == kind
            else f"bellad models import PATH --name {spec}"
        )
        raise ModelError(f"{kind} model {spec!r} is not installed in {models_dir}: run  {fix}")
    where = f"{kind} model {spec!r} in {models_dir}"
    return _checked(folder, kind, where, f"bellad models import PATH --name {spec} --force")


def _resolve_builtin(kind: Kind) -> Path:
    if kind != "sentiment":
        raise ModelError(f"there is no built-in {kind} model: run  bellad models pull tiny.en")
    folder = builtin_sentiment_dir()
    lacking = missing_files("sentiment", folder)
    if lacking:
        raise ModelError(
            f"the built-in sentiment model is missing from the bellad package ({folder} lacks "
            f"{', '.join(lacking)}): reinstall bellad with  pip install --force-reinstall bellad"
        )
    return folder


def _resolve_path(folder: Path, kind: Kind) -> Path:
    if not folder.is_dir():
        raise ModelError(
            f"{kind} model folder {folder} does not exist: fix the path, or install one with  "
            f"bellad models pull {DEFAULT_MODEL[kind]}"
        )
    where = f"{kind} model {str(folder)!r}"
    if (folder / MANIFEST_NAME).exists():
        return _checked(folder, kind, where, f"bellad models import {folder} --force")
    lacking = missing_files(kind, folder)
    if lacking:
        raise ModelError(
            f"{where} is not a {kind} model folder (no {', '.join(lacking)}): "
            f"run  bellad models pull {DEFAULT_MODEL[kind]}"
        )
    log.warning("%s has no %s: its files cannot be checked for damage", where, MANIFEST_NAME)
    return folder


def _checked(folder: Path, kind: Kind, where: str, fallback_fix: str) -> Path:
    try:
        manifest = Manifest.read(folder)
    except FileNotFoundError:
        raise ModelError(f"{where} has no {MANIFEST_NAME}: run  {fallback_fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{where} has an unreadable manifest ({exc}): run  {fallback_fix}"
        ) from None
    if manifest.kind != kind:
        raise ModelError(
            f"{where} is a {manifest.kind} model, not a {kind} model: choose a {kind} model "
            f"(see  bellad models list)"
        )
    check = check_model(folder, manifest, full=False)
    if not check.ok:
        raise ModelError(f"{where} is damaged ({check.summary()}): run  {manifest.fix_command()}")
    log.debug(
        "%s verified in %.1f ms (%d of %d files re-hashed)",
        where,
        check.seconds * 1000,
        len(check.rehashed),
        len(manifest.files),
    )
    return folder


# -- offline mode and endpoints -----------------------------------------------


def enforce_offline() -> None:
    """Forbid the hub client any network access in this process.

    Sets ``HF_HUB_OFFLINE=1`` (read by ``huggingface_hub`` when it is first
    imported) and, if it was imported already, flips its live flag too, so
    that every hub request fails with ``OfflineModeIsEnabled`` instead of
    reaching out. Telemetry is switched off as well.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        constants.HF_HUB_DISABLE_TELEMETRY = True  # type: ignore[attr-defined]
        log.debug("huggingface_hub was already imported: switched its offline flag")


def hub_endpoint(explicit: str | None = None) -> str:
    """The hub to pull from: ``explicit``, else ``$HF_ENDPOINT`` now, else the public hub."""
    return (explicit or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def default_models_dir() -> Path:
    """``$STATE_DIRECTORY/models`` under systemd, else ``/var/lib/bellad/models``."""
    state = os.environ.get("STATE_DIRECTORY")
    base = Path(state.split(":")[0]) if state else Path("/var/lib/bellad")
    return base / "models"


def human_size(n: int) -> str:
    """Decimal units, as the hub shows them (``78.1 MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover - the loop always returns


# -- the store ----------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """A folder in the models dir, with its manifest (if any) and a quick check."""

    name: str
    path: Path
    manifest: Manifest | None
    check: Check | None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return self.error
        assert self.check is not None
        return "ok" if self.check.ok else f"damaged: {self.check.summary()}"


@dataclass(frozen=True)
class InstallResult:
    """What :meth:`ModelStore.pull` or :meth:`ModelStore.import_model` did."""

    manifest: Manifest
    path: Path
    changed: bool  # False: the same model was already installed and intact


@dataclass(frozen=True)
class _RemoteFile:
    repo_path: str
    local: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # plain git files


class ModelStore:
    """The models folder: what is installed, and the commands that change it.

    ``on_staged`` is called with the staging folder once a model is complete
    and verified, just before the rename that installs it (tests use it to
    simulate a crash at the worst moment).
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        endpoint: str | None = None,
        on_staged: Callable[[Path], None] | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.endpoint = hub_endpoint(endpoint)
        self._on_staged = on_staged

    @property
    def cache_dir(self) -> Path:
        return self.models_dir / CACHE_DIRNAME / "downloads"

    # -- reading -------------------------------------------------------------

    def installed(self, *, full: bool = False) -> list[InstalledModel]:
        """Every model folder, checked (quickly, with stamps, unless ``full``), by name."""
        if not self.models_dir.is_dir():
            return []
        found = []
        for path in sorted(self.models_dir.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            found.append(self._inspect(path, full=full))
        return found

    def get(self, name: str, *, full: bool = False) -> InstalledModel:
        """One installed model, checked (``full``: every file re-hashed)."""
        path = self._target(name)
        if not path.is_dir():
            fix = f"bellad models pull {name}" if name in CATALOG else "bellad models list"
            raise ModelError(f"model {name!r} is not installed in {self.models_dir}: run  {fix}")
        return self._inspect(path, full=full)

    def _inspect(self, path: Path, *, full: bool) -> InstalledModel:
        try:
            manifest = Manifest.read(path)
        except FileNotFoundError:
            return InstalledModel(path.name, path, None, None, f"no {MANIFEST_NAME}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return InstalledModel(path.name, path, None, None, f"unreadable manifest: {exc}")
        return InstalledModel(path.name, path, manifest, check_model(path, manifest, full=full))

    def _target(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ModelError(
                f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-'"
            )
        return self.models_dir / name

    # -- pull ----------------------------------------------------------------

    def pull(self, name: str, *, revision: str | None = None, force: bool = False) -> InstallResult:
        """Download catalog model ``name`` and install it (a no-op if already intact)."""
        entry = catalog_entry(name)
        target = self._target(name)
        with self._locked():
            prepare_hub_client(self.endpoint)
            kept = None if force else self._intact(target, entry)
            if kept is not None and revision in (None, kept.source.get("revision")):
                return InstallResult(kept, target, changed=False)
            with _hub_errors(name, self.endpoint):
                commit, remote = self._remote_files(entry, revision or "main")
                if kept is not None and kept.source.get("revision") == commit:
                    return InstallResult(kept, target, changed=False)
                self._check_space(name, remote)
            fetched = []
            for f in remote:
                with _hub_errors(name, self.endpoint, f.repo_path):
                    fetched.append(self._fetch(name, entry.repo_id, commit, f))
            manifest = Manifest(
                name=name,
                kind=entry.kind,
                files=tuple(sorted((rec for _, rec in fetched), key=lambda r: r.path)),
                source={
                    "type": "hub",
                    "endpoint": self.endpoint,
                    "repo": entry.repo_id,
                    "revision": commit,
                    "requested": revision or "main",
                },
                installed=_installed_now("pull"),
            )
            self._install(manifest, [(blob, rec.path) for blob, rec in fetched], link=True)
            for blob, _ in fetched:
                blob.unlink(missing_ok=True)
            record_stamps(target, manifest)  # after the unlinks, which change the files' ctime
        return InstallResult(manifest, target, changed=True)

    def _intact(self, target: Path, entry: CatalogEntry) -> Manifest | None:
        """The manifest of an intact installed ``entry`` model, else None."""
        if not target.is_dir():
            return None
        found = self._inspect(target, full=False)
        manifest = found.manifest
        if manifest is None or found.check is None or not found.check.ok:
            log.warning("model %s is %s: downloading it again", target.name, found.status)
            return None
        if manifest.source.get("type") == "hub" and manifest.source.get("repo") != entry.repo_id:
            return None
        log.info("model %s is installed (%s)", target.name, manifest.origin)
        return manifest

    def _remote_files(self, entry: CatalogEntry, revision: str) -> tuple[str, list[_RemoteFile]]:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, library_name="bellad", library_version=__version__)
        info = api.model_info(entry.repo_id, revision=revision, files_metadata=True)
        if not info.sha:
            raise ModelError(f"the hub at {self.endpoint} gave no commit for {entry.repo_id}")
        remote = [
            _RemoteFile(
                repo_path=s.rfilename,
                local=entry.local_name(s.rfilename),
                size=s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
            for s in info.siblings or []
            if any(fnmatch.fnmatchcase(s.rfilename, pattern) for pattern in entry.files)
        ]
        names = {f.local for f in remote}
        lacking = [
            " or ".join(globs)
            for globs in _LAYOUT[entry.kind]
            if not any(fnmatch.filter(names, g) for g in globs)
        ]
        if lacking:
            raise ModelError(
                f"{entry.repo_id}@{info.sha[:7]} lacks {', '.join(lacking)}: "
                f"it cannot be installed as {entry.kind} model {entry.name!r}"
            )
        return info.sha, remote

    def _check_space(self, name: str, remote: Sequence[_RemoteFile]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        needed = 0
        for f in remote:
            have = [self.cache_dir / (f.sha256 or f.blob_id or "?"), self._partial(f)]
            done = sum(p.stat().st_size for p in have if p.is_file())
            needed += max((f.size or 0) - done, 0)
        free = shutil.disk_usage(self.models_dir).free
        if needed > free:
            raise ModelError(
                f"not enough space in {self.models_dir} for model {name!r}: it needs "
                f"{human_size(needed)} more and {human_size(free)} is free: free some space "
                f"or choose another models dir"
            )

    def _partial(self, f: _RemoteFile) -> Path:
        return self.cache_dir / f"{f.sha256 or f.blob_id or '?'}.part"

    def _fetch(
        self, name: str, repo_id: str, commit: str, f: _RemoteFile
    ) -> tuple[Path, FileRecord]:
        """Download one file into the cache (resuming a partial one) and check it."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo_id, f.repo_path, revision=commit, endpoint=self.endpoint)
        meta = get_hf_file_metadata(
            url, endpoint=self.endpoint, library_name="bellad", library_version=__version__
        )
        algo, expected = _hub_checksum(f, meta)
        blob = self.cache_dir / expected
        if blob.is_file():  # downloaded by a pull that did not finish installing
            sha256 = _verify_download(blob, algo, expected, f.repo_path, name)
        else:
            part = self.cache_dir / f"{expected}.part"
            self._download(url, meta, part, f)
            sha256 = _verify_download(part, algo, expected, f.repo_path, name)
            part.replace(blob)
        return blob, FileRecord(f.local, blob.stat().st_size, sha256)

    def _download(self, url: str, meta: HfFileMetadata, part: Path, f: _RemoteFile) -> None:
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        size = meta.size if meta.size is not None else f.size
        resume = part.stat().st_size if part.is_file() else 0
        if size is not None and resume > size:
            part.unlink()
            resume = 0
        headers = build_hf_headers(library_name="bellad", library_version=__version__)
        if urlsplit(meta.location).netloc != urlsplit(url).netloc:
            headers.pop("authorization", None)  # a CDN gets no token
        if resume:
            log.info("resuming %s at %s of %s", f.repo_path, human_size(resume), _size(size))
        else:
            log.info("downloading %s (%s)", f.repo_path, _size(size))
        with part.open("ab") as fh:
            http_get(
                meta.location,
                fh,
                resume_size=resume,
                headers=headers,
                expected_size=size,
                displayed_filename=f.local,
            )

    # -- import --------------------------------------------------------------

    def import_model(
        self,
        source: Path,
        *,
        name: str | None = None,
        kind: Kind | None = None,
        force: bool = False,
    ) -> InstallResult:
        """Install a model from a folder or an archive, checked against its manifest if any.

        Importing a model identical to the installed one (same manifest files)
        changes nothing, so that provisioning scripts can run it again.
        """
        if not source.exists():
            raise ModelError(f"cannot import {source}: no such file or folder")
        with self._locked():
            unpack_dir = self.models_dir / f".staging-unpack-{secrets.token_hex(4)}"
            try:
                root = source
                if source.is_file():
                    unpack(source, unpack_dir)
                    root = unpack_dir
                manifest, files = _import_plan(_model_root(root), source, name, kind)
                target = self._target(manifest.name)
                if target.exists() and not force:
                    same = self._same_as_installed(target, manifest)
                    if same is not None:
                        return InstallResult(same, target, changed=False)
                    raise ModelError(
                        f"model {manifest.name!r} is already installed in {self.models_dir}: "
                        f"add --force to replace it"
                    )
                manifest = self._install(manifest, files, link=False, move=source.is_file())
            finally:
                shutil.rmtree(unpack_dir, ignore_errors=True)
            record_stamps(target, manifest)
        return InstallResult(manifest, target, changed=True)

    def _same_as_installed(self, target: Path, incoming: Manifest) -> Manifest | None:
        """The installed manifest if it is intact and lists exactly ``incoming``'s files."""
        found = self._inspect(target, full=False)
        if found.manifest is None or found.check is None or not found.check.ok:
            return None
        if not all(f.sha256 for f in incoming.files) or found.manifest.files != incoming.files:
            return None
        log.info("model %s is already installed with the same files", target.name)
        return found.manifest

    # -- remove --------------------------------------------------------------

    def remove(self, name: str) -> None:
        """Delete an installed model: one rename makes it vanish, then the files go."""
        target = self._target(name)
        with self._locked():
            if not target.is_dir():
                raise ModelError(f"model {name!r} is not installed in {self.models_dir}")
            doomed = self.models_dir / f".removed-{name}-{secrets.token_hex(4)}"
            target.rename(doomed)
            _fsync_dir(self.models_dir)
            shutil.rmtree(doomed)

    # -- installing ----------------------------------------------------------

    def _install(
        self,
        manifest: Manifest,
        files: Sequence[tuple[Path, str]],
        *,
        link: bool,
        move: bool = False,
    ) -> Manifest:
        """Stage ``files`` (source, local name), verify them, write the manifest, rename."""
        stage = self.models_dir / f".staging-{manifest.name}-{secrets.token_hex(4)}"
        stage.mkdir(mode=0o755)
        try:
            linked = set()
            for src, local in files:
                dst = stage / _safe_relpath(local)
                dst.parent.mkdir(parents=True, exist_ok=True)
                if _place(src, dst, link=link, move=move):
                    linked.add(local)
                dst.chmod(0o444)
            manifest = _checked_against(stage, manifest, trusted=linked)
            lacking = missing_files(manifest.kind, stage)
            if lacking:
                raise ModelError(
                    f"{manifest.kind} model {manifest.name!r} lacks {', '.join(lacking)}: "
                    f"it was not installed"
                )
            (stage / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
            (stage / MANIFEST_NAME).chmod(0o444)
            _fsync_tree(stage)
            if self._on_staged is not None:
                self._on_staged(stage)
            self._commit(stage, manifest.name)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        log.info("installed %s model %s in %s", manifest.kind, manifest.name, self.models_dir)
        return manifest

    def _commit(self, stage: Path, name: str) -> None:
        target = self.models_dir / name
        old = None
        if target.exists():
            old = self.models_dir / f".replaced-{name}-{secrets.token_hex(4)}"
            target.rename(old)
        stage.rename(target)
        _fsync_dir(self.models_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One changing command at a time per models dir; tidies what a crash left.

        A filesystem error inside (no permission, disk full) becomes a :class:`ModelError`.
        """
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            with (self.models_dir / ".lock").open("a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("waiting for another bellad models command on %s", self.models_dir)
                    fcntl.flock(fh, fcntl.LOCK_EX)
                self._tidy()
                yield
        except OSError as exc:
            where = exc.filename or self.models_dir
            raise ModelError(
                f"cannot change the models dir: {where}: {exc.strerror or exc}: run as a user "
                f"who may write there, or choose another dir with --models-dir"
            ) from exc

    def _tidy(self) -> None:
        """Undo what an interrupted command left: staging folders, half-done removals.

        A model set aside by a replace that died before the new one was
        renamed in (``.replaced-*``) is put back.
        """
        for path in self.models_dir.glob(".replaced-*"):
            name = path.name.removeprefix(".replaced-").rsplit("-", 1)[0]
            if _NAME.fullmatch(name) and not (self.models_dir / name).exists():
                log.info("restoring model %s, set aside by an interrupted replace", name)
                path.rename(self.models_dir / name)
        for pattern in (".staging-*", ".removed-*", ".replaced-*"):
            for path in self.models_dir.glob(pattern):
                log.info("removing %s, left by an interrupted command", path.name)
                shutil.rmtree(path, ignore_errors=True)


# -- helpers: hub -------------------------------------------------------------


def prepare_hub_client(endpoint: str) -> None:
    """Make ``endpoint`` the hub client's own default too, if it is not loaded yet.

    bellad passes the endpoint to every call, but ``huggingface_hub`` reads
    ``HF_ENDPOINT`` once, at import, for requests of its own (2.x fetches
    ``/api/agent-harnesses`` once per process): with a mirror, those must not
    go to the public hub.
    """
    if "huggingface_hub" not in sys.modules:
        os.environ["HF_ENDPOINT"] = endpoint
        return
    from huggingface_hub import constants

    if endpoint != constants.ENDPOINT:
        log.debug(
            "huggingface_hub was loaded for %s; bellad pulls from %s", constants.ENDPOINT, endpoint
        )


def _size(n: int | None) -> str:
    return human_size(n) if n is not None else "size unknown"


def _hub_checksum(f: _RemoteFile, meta: HfFileMetadata) -> tuple[str, str]:
    """``(algorithm, hex digest)`` the hub vouches for: sha256 (LFS) or git blob sha1."""
    etag = (meta.etag or "").lower()
    if f.sha256 is not None:
        expected = ("sha256", f.sha256.lower())
    elif f.blob_id is not None:
        expected = ("git-sha1", f.blob_id.lower())
    elif re.fullmatch(r"[0-9a-f]{64}", etag):
        expected = ("sha256", etag)
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        expected = ("git-sha1", etag)
    else:
        raise ModelError(f"the hub gave no checksum for {f.repo_path}: it cannot be verified")
    if etag and etag != expected[1]:
        log.warning(
            "%s: the hub's ETag %s differs from its file listing's %s %s: checking against "
            "the listing",
            f.repo_path,
            etag[:12],
            expected[0],
            expected[1][:12],
        )
    return expected


def _verify_download(path: Path, algo: str, expected: str, repo_path: str, name: str) -> str:
    """Check a downloaded file against the hub's checksum; return its sha256."""
    sha256, git_sha1 = hash_file(path, git_blob=algo == "git-sha1")
    actual = sha256 if algo == "sha256" else git_sha1
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"{repo_path} of model {name!r} does not match the hub's {algo} (expected "
            f"{expected[:12]}, got {(actual or '')[:12]}): the download was damaged and "
            f"removed: run  bellad models pull {name}"
        )
    return sha256


@contextlib.contextmanager
def _hub_errors(name: str, endpoint: str, path: str | None = None) -> Iterator[None]:
    """Turn what the hub client raises into one-line :class:`ModelError` messages."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except OfflineModeIsEnabled:
        raise ModelError(
            f"cannot pull {name!r}: the hub client is in offline mode (HF_HUB_OFFLINE): "
            f"unset HF_HUB_OFFLINE, or copy the model over and run  bellad models import PATH"
        ) from None
    except RepositoryNotFoundError:
        repo = CATALOG[name].repo_id
        raise ModelError(
            f"the hub at {endpoint} has no repository {repo} for model {name!r}: check HF_ENDPOINT"
        ) from None
    except RevisionNotFoundError:
        raise ModelError(
            f"{CATALOG[name].repo_id} has no such revision: run  bellad models pull {name}"
        ) from None
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        what = f"{path} of model {name!r}" if path else f"model {name!r}"
        raise ModelError(
            f"downloading {what} from {endpoint} failed ({_reason(exc)}): run  "
            f"bellad models pull {name}  again, it resumes where it stopped"
        ) from exc


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a failed request."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- helpers: files -----------------------------------------------------------


def _safe_relpath(path: str) -> str:
    """``path`` if it stays inside its folder, else :class:`ValueError`."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise ValueError(f"unsafe path {path!r}")
    return Path(*parts).as_posix()


def _place(src: Path, dst: Path, *, link: bool, move: bool) -> bool:
    """Put ``src`` at ``dst``; True if ``dst`` is a hard link to the (verified) ``src``."""
    if move:
        src.replace(dst)
        return False
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass  # another filesystem, or no hard links: copy instead
    shutil.copyfile(src, dst)
    return False


def _checked_against(stage: Path, manifest: Manifest, trusted: set[str]) -> Manifest:
    """Hash the staged files; fill in missing hashes, or fail on any mismatch.

    Files in ``trusted`` are hard links to files hashed moments ago: same bytes.
    """
    records = []
    for rec in manifest.files:
        path = stage / rec.path
        size = path.stat().st_size
        if rec.sha256 and rec.path in trusted and size == rec.size:
            records.append(rec)
        elif rec.sha256:
            if size != rec.size or hash_file(path)[0] != rec.sha256:
                raise ModelError(
                    f"{rec.path} of model {manifest.name!r} does not match its manifest "
                    f"(sha256 or size differs): it was not installed; copy it again"
                )
            records.append(rec)
        else:
            records.append(FileRecord(rec.path, size, hash_file(path)[0]))
    return replace(manifest, files=tuple(records))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- helpers: import ----------------------------------------------------------


def unpack(archive: Path, dest: Path) -> None:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` archive, refusing unsafe entries."""
    lower = archive.name.lower()
    dest.mkdir(mode=0o755)
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _safe_relpath(name)
                zf.extractall(dest)
        elif lower.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    if not (m.isfile() or m.isdir()):
                        raise ValueError(f"{m.name!r} is a link or a device")
                    _safe_relpath(m.name)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                    tf.extractall(dest, members=members, filter="data")
                else:
                    tf.extractall(dest, members=members)
        else:
            raise ModelError(
                f"cannot import {archive}: not a folder nor a "
                f"{', '.join(_ARCHIVE_SUFFIXES)} archive"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise ModelError(f"cannot import {archive}: the archive is unusable ({exc})") from None


def _model_root(folder: Path) -> Path:
    """The model inside ``folder``, looking through one or two wrapping folders."""
    for _ in range(3):
        if (folder / MANIFEST_NAME).is_file() or detect_kind(folder) is not None:
            return folder
        entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX",)]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        folder = entries[0]
    return folder


def _import_plan(
    root: Path, source: Path, name: str | None, kind: Kind | None
) -> tuple[Manifest, list[tuple[Path, str]]]:
    """The manifest to install and the (source file, local name) pairs to copy."""
    origin = str(source.resolve())
    if (root / MANIFEST_NAME).exists():
        try:
            recorded = Manifest.read(root)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"cannot import {source}: its manifest is unreadable ({exc})"
            ) from None
        if kind is not None and kind != recorded.kind:
            raise ModelError(
                f"cannot import {source}: it holds a {recorded.kind} model, not {kind}"
            )
        missing = [r.path for r in recorded.files if not (root / r.path).is_file()]
        if missing:
            raise ModelError(f"cannot import {source}: {', '.join(missing)} is missing")
        manifest = replace(
            recorded,
            name=name or recorded.name,
            installed=_installed_now("import", origin),
        )
        return manifest, [(root / r.path, r.path) for r in recorded.files]
    kind = kind or detect_kind(root)
    if kind is None:
        raise ModelError(
            f"cannot import {source}: it holds neither a Whisper CTranslate2 model (model.bin) "
            f"nor an ONNX sentiment model (model.onnx)"
        )
    files = _bare_files(kind, root)
    lacking = [
        " or ".join(globs)
        for globs in _LAYOUT[kind]
        if not any(fnmatch.filter([local for _, local in files], g) for g in globs)
    ]
    if lacking:
        raise ModelError(f"cannot import {source}: a {kind} model needs {', '.join(lacking)}")
    manifest = Manifest(
        name=name or _name_from(source),
        kind=kind,
        files=tuple(FileRecord(local, 0, "") for _, local in files),
        source={"type": "import", "origin": origin},
        installed=_installed_now("import", origin),
    )
    return manifest, files


def _bare_files(kind: Kind, root: Path) -> list[tuple[Path, str]]:
    if kind == "whisper":
        found = {p for pattern in _WHISPER_FILES for p in root.glob(pattern) if p.is_file()}
        return [(p, p.name) for p in sorted(found)]
    files = []
    onnx = _find_onnx(root)
    if onnx is not None:
        files.append((onnx, "model.onnx"))
    files += [(root / n, n) for n in _SENTIMENT_EXTRAS if (root / n).is_file()]
    return files


def _name_from(source: Path) -> str:
    name = source.name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not _NAME.fullmatch(name):
        raise ModelError(f"cannot import {source}: {name!r} is no model name: add --name NAME")
    return name
