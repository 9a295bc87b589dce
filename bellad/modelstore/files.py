"""File helpers for model folders: hashing, safe relative paths, copying, flushing, sizes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

_HASH_BUFFER = 1 << 20


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


def safe_relpath(path: str) -> str:
    """``path`` if it stays inside its folder, else :class:`ValueError`."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise ValueError(f"unsafe path {path!r}")
    return Path(*parts).as_posix()


def place(src: Path, dst: Path, *, link: bool, move: bool) -> bool:
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


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and itself) to disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(path)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def human_size(n: int) -> str:
    """Decimal units, as the hub shows them (``78.1 MB``)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover - the loop always returns
