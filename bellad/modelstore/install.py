"""Changing a models dir safely: atomic installs, removals, one command at a time.

An install stages the files in ``.staging-<name>-*`` next to the target,
verifies them, writes the manifest, flushes everything to disk, then moves the
folder into place with one rename (setting a model it replaces aside as
``.replaced-<name>-*`` first). A removal renames the model to
``.removed-<name>-*`` before deleting it. A crash therefore leaves a dot-folder,
never a half model under the model's name; :func:`locked` takes the models
dir's lock and tidies such leftovers before any change.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from bellad.errors import ModelError
from bellad.modelstore.files import fsync_dir, fsync_tree, hash_file, place, safe_relpath
from bellad.modelstore.layout import NAME, missing_files
from bellad.modelstore.manifest import MANIFEST_NAME, FileRecord, Manifest

log = logging.getLogger(__name__)

# What the dot-folders of a command under way hold; _tidy clears them all.
STAGING, REPLACED, REMOVED = "staging", "replaced", "removed"


def scratch(models_dir: Path, state: str, name: str) -> Path:
    """A fresh ``.<state>-<name>-<random>`` path in the models dir, for :func:`_tidy` to find."""
    return models_dir / f".{state}-{name}-{secrets.token_hex(4)}"


def install(
    models_dir: Path,
    manifest: Manifest,
    files: Sequence[tuple[Path, str]],
    *,
    link: bool,
    move: bool = False,
    on_staged: Callable[[Path], None] | None = None,
) -> Manifest:
    """Stage ``files`` (source, local name), verify them, write the manifest, rename."""
    stage = scratch(models_dir, STAGING, manifest.name)
    stage.mkdir(mode=0o755)
    try:
        linked = set()
        for src, local in files:
            dst = stage / safe_relpath(local)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if place(src, dst, link=link, move=move):
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
        fsync_tree(stage)
        if on_staged is not None:
            on_staged(stage)
        _commit(models_dir, stage, manifest.name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("installed %s model %s in %s", manifest.kind, manifest.name, models_dir)
    return manifest


def _commit(models_dir: Path, stage: Path, name: str) -> None:
    target = models_dir / name
    old = None
    if target.exists():
        old = scratch(models_dir, REPLACED, name)
        target.rename(old)
    stage.rename(target)
    fsync_dir(models_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove(models_dir: Path, name: str) -> None:
    """Delete an installed model: one rename makes it vanish, then the files go."""
    doomed = scratch(models_dir, REMOVED, name)
    (models_dir / name).rename(doomed)
    fsync_dir(models_dir)
    shutil.rmtree(doomed)


@contextlib.contextmanager
def locked(models_dir: Path) -> Iterator[None]:
    """One changing command at a time per models dir; tidies what a crash left.

    A filesystem error inside (no permission, disk full) becomes a :class:`ModelError`.
    """
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with (models_dir / ".lock").open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another bellad models command on %s", models_dir)
                fcntl.flock(fh, fcntl.LOCK_EX)
            _tidy(models_dir)
            yield
    except OSError as exc:
        where = exc.filename or models_dir
        raise ModelError(
            f"cannot change the models dir: {where}: {exc.strerror or exc}: run as a user "
            f"who may write there, or choose another dir with --models-dir"
        ) from exc


def _tidy(models_dir: Path) -> None:
    """Undo what an interrupted command left: staging folders, half-done removals.

    A model set aside by a replace that died before the new one was
    renamed in (``.replaced-*``) is put back.
    """
    for path in models_dir.glob(f".{REPLACED}-*"):
        name = path.name.removeprefix(f".{REPLACED}-").rsplit("-", 1)[0]
        if NAME.fullmatch(name) and not (models_dir / name).exists():
            log.info("restoring model %s, set aside by an interrupted replace", name)
            path.rename(models_dir / name)
    for state in (STAGING, REMOVED, REPLACED):
        for path in models_dir.glob(f".{state}-*"):
            log.info("removing %s, left by an interrupted command", path.name)
            shutil.rmtree(path, ignore_errors=True)


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
