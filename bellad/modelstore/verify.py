"""Checking an installed model against its manifest, quickly at start, fully on demand.

Files are hashed in full once; afterwards a stamp of (size, mtime, ctime,
inode) per file, recorded in ``.bellad-verified.json`` after a successful
check, lets a quick check re-hash only the files that changed. The stamps are
tied to the manifest they were checked against (by its sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bellad.modelstore.files import hash_file
from bellad.modelstore.manifest import MANIFEST_NAME, Manifest

log = logging.getLogger(__name__)

STAMPS_NAME = ".bellad-verified.json"


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
