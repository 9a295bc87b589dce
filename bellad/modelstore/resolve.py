"""Resolving the models the daemon runs: a name, a path or ``builtin`` to a checked folder.

:func:`resolve_model` is what the daemon calls at start: a missing or damaged
model raises :class:`~bellad.errors.ModelError` naming the model and the
command that fixes it. The check is the quick one (stamps, see
:mod:`bellad.modelstore.verify`), so a start costs one ``stat`` per file.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from bellad.errors import ModelError
from bellad.modelstore.catalog import CATALOG, DEFAULT_MODEL
from bellad.modelstore.layout import NAME, Kind, missing_files
from bellad.modelstore.manifest import MANIFEST_NAME, Manifest
from bellad.modelstore.verify import check_model

log = logging.getLogger(__name__)


def builtin_sentiment_dir() -> Path:
    """Where the package's own sentiment model lives (``bellad/data/sentiment``)."""
    ref = importlib.resources.files("bellad").joinpath("data", "sentiment")
    return Path(str(ref))


def names_a_folder(spec: str) -> bool:
    """Whether a model spec of the config is a path to a folder rather than a name."""
    return "/" in spec or spec.startswith((".", "~"))


def resolve_model(spec: str, kind: Kind, models_dir: Path) -> Path:
    """The folder of the ``kind`` model named by ``spec``, checked.

    ``spec`` is an installed name (``tiny.en``), a path to a model folder, or
    for sentiment ``builtin``. Raises :class:`ModelError` (one line naming the
    model and the fixing command) if the model is missing or damaged.
    """
    if spec == "builtin":
        return _resolve_builtin(kind)
    if names_a_folder(spec):
        return _resolve_path(Path(spec).expanduser(), kind)
    if not NAME.fullmatch(spec):
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
    except (OSError, ValueError) as exc:
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
