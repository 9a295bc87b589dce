"""``bellad-manifest.json``: what an installed model holds and where it came from.

The manifest lists the size and sha256 of every file of the model, its kind,
its source (hub repository and commit, or the path it was imported from) and
when and how it was installed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bellad import __version__
from bellad.modelstore.catalog import CATALOG
from bellad.modelstore.files import safe_relpath
from bellad.modelstore.layout import KINDS, Kind

MANIFEST_NAME = "bellad-manifest.json"
MANIFEST_FORMAT = "bellad-model/1"


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
        """The manifest in ``folder``; :class:`ValueError` or :class:`OSError` if unusable.

        :class:`FileNotFoundError` (an :class:`OSError`) says there is none.
        """
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, AttributeError) as exc:  # a field missing or mistyped
            raise ValueError(str(exc)) from exc

    @classmethod
    def _from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest")
        if data.get("kind") not in KINDS:
            raise ValueError(f"unknown kind {data.get('kind')!r}")
        files = tuple(
            FileRecord(safe_relpath(path), int(meta["size"]), str(meta["sha256"]))
            for path, meta in sorted(data["files"].items())
        )
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            files=files,
            source={str(k): str(v) for k, v in data.get("source", {}).items()},
            installed={str(k): str(v) for k, v in data.get("installed", {}).items()},
        )


def installed_now(via: str, origin: str | None = None) -> dict[str, str]:
    """The ``installed`` record of an install happening now, by ``pull`` or ``import``."""
    info = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "by": f"bellad {__version__}",
        "via": via,
    }
    if origin is not None:
        info["from"] = origin
    return info
