"""What ``bellad models import`` installs: a model found in a folder or an archive.

An archive (``.tar``, ``.tar.gz``/``.tgz``, ``.zip``) is unpacked first,
refusing links, devices and paths that leave the folder. The model may sit at
the top or inside one or two wrapping folders. A folder installed by bellad
brings its manifest, against which every file is checked; a bare folder (a
conversion of one's own) is recognised by its files and gets a new manifest.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

from bellad.errors import ModelError
from bellad.modelstore.files import hash_file, safe_relpath
from bellad.modelstore.layout import (
    NAME,
    SENTIMENT_EXTRAS,
    WHISPER_FILES,
    Kind,
    detect_kind,
    find_onnx,
    lacking,
)
from bellad.modelstore.manifest import MANIFEST_NAME, FileRecord, Manifest, installed_now

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def unpack(archive: Path, dest: Path) -> None:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` archive, refusing unsafe entries."""
    lower = archive.name.lower()
    dest.mkdir(mode=0o755)
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    safe_relpath(name)
                zf.extractall(dest)
        elif lower.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    if not (m.isfile() or m.isdir()):
                        raise ValueError(f"{m.name!r} is a link or a device")
                    safe_relpath(m.name)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                    tf.extractall(dest, members=members, filter="data")
                else:
                    tf.extractall(dest, members=members)
        else:
            raise ModelError(
                f"cannot import {archive}: not a folder nor a {', '.join(ARCHIVE_SUFFIXES)} archive"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise ModelError(f"cannot import {archive}: the archive is unusable ({exc})") from None


def model_root(folder: Path) -> Path:
    """The model inside ``folder``, looking through one or two wrapping folders."""
    for _ in range(3):
        if (folder / MANIFEST_NAME).is_file() or detect_kind(folder) is not None:
            return folder
        entries = [p for p in folder.iterdir() if p.name not in ("__MACOSX",)]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        folder = entries[0]
    return folder


def import_plan(
    root: Path, source: Path, name: str | None, kind: Kind | None
) -> tuple[Manifest, list[tuple[Path, str]]]:
    """The manifest to install and the (source file, local name) pairs to copy."""
    origin = str(source.resolve())
    if (root / MANIFEST_NAME).exists():
        try:
            recorded = Manifest.read(root)
        except (OSError, ValueError) as exc:
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
            installed=installed_now("import", origin),
        )
        return manifest, [(root / r.path, r.path) for r in recorded.files]
    kind = kind or detect_kind(root)
    if kind is None:
        raise ModelError(
            f"cannot import {source}: it holds neither a Whisper CTranslate2 model (model.bin) "
            f"nor an ONNX sentiment model (model.onnx)"
        )
    files = _bare_files(kind, root)
    missing = lacking(kind, (local for _, local in files))
    if missing:
        raise ModelError(f"cannot import {source}: a {kind} model needs {', '.join(missing)}")
    manifest = Manifest(
        name=name or _name_from(source),
        kind=kind,
        # hashed here, so that importing the same folder again is seen to change nothing
        files=tuple(
            FileRecord(local, path.stat().st_size, hash_file(path)[0]) for path, local in files
        ),
        source={"type": "import", "origin": origin},
        installed=installed_now("import", origin),
    )
    return manifest, files


def _bare_files(kind: Kind, root: Path) -> list[tuple[Path, str]]:
    if kind == "whisper":
        found = {p for pattern in WHISPER_FILES for p in root.glob(pattern) if p.is_file()}
        return [(p, p.name) for p in sorted(found)]
    files = []
    onnx = find_onnx(root)
    if onnx is not None:
        files.append((onnx, "model.onnx"))
    files += [(root / n, n) for n in SENTIMENT_EXTRAS if (root / n).is_file()]
    return files


def _name_from(source: Path) -> str:
    name = source.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not NAME.fullmatch(name):
        raise ModelError(f"cannot import {source}: {name!r} is no model name: add --name NAME")
    return name
