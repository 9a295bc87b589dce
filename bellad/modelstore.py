"""Installed models: resolution by name or path (provisioning lands separately)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from bellad.errors import ModelError

BUILTIN_SENTIMENT = Path(__file__).resolve().parent / "data" / "sentiment"


def enforce_offline() -> None:
    """Never let the hub client reach the network at run time."""
    os.environ["HF_HUB_OFFLINE"] = "1"


def resolve_model(spec: str, kind: Literal["whisper", "sentiment"], models_dir: Path) -> Path:
    """A model folder from an installed name, a path, or ``builtin`` (sentiment)."""
    if kind == "sentiment" and spec == "builtin":
        return BUILTIN_SENTIMENT
    path = Path(spec) if ("/" in spec or spec.startswith(".")) else models_dir / spec
    if not path.is_dir():
        raise ModelError(
            f"{kind} model {spec!r} is not installed in {models_dir}: "
            f"run  bellad models pull {spec}"
        )
    return path
