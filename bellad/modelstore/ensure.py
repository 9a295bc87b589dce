"""``bellad models ensure``: the models a config names, installed before the daemon starts.

For each model the daemon will load (``transcribe.model``, and
``sentiment.model`` while sentiment is enabled), a name that resolves as the
daemon would resolve it (installed, intact, of the right kind) is left alone
without touching the network. A missing or damaged model that the catalog
knows is pulled. ``builtin`` and folder paths are not looked at: there is
nothing to pull for them. A model that cannot be fetched fails with one line
naming it and saying how to import it on a device with no internet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bellad.errors import ModelError
from bellad.modelstore.catalog import CATALOG
from bellad.modelstore.hubclient import FetchError
from bellad.modelstore.layout import Kind
from bellad.modelstore.resolve import names_a_folder, resolve_model
from bellad.modelstore.store import InstallResult, ModelStore

if TYPE_CHECKING:
    from bellad.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wanted:
    """A model the config names: the key, its value, and the kind the daemon loads it as."""

    key: str
    spec: str
    kind: Kind

    @property
    def pullable(self) -> bool:
        """Whether the spec is a name, not ``builtin`` nor a folder path."""
        return self.spec != "builtin" and not names_a_folder(self.spec)


@dataclass(frozen=True)
class Ensured:
    """What :func:`ensure_model` found or did for one model."""

    wanted: Wanted
    path: Path | None  # None: builtin or a folder path, not looked at
    pulled: InstallResult | None = None  # None: nothing was installed


def wanted_models(cfg: Config) -> list[Wanted]:
    """The models the daemon loads with ``cfg``."""
    wanted = [Wanted("transcribe.model", cfg.transcribe.model, "whisper")]
    if cfg.sentiment.enabled:
        wanted.append(Wanted("sentiment.model", cfg.sentiment.model, "sentiment"))
    return wanted


def ensure_model(store: ModelStore, want: Wanted) -> Ensured:
    """Leave ``want`` alone if it resolves; else pull it if the catalog has it, else fail."""
    if not want.pullable:
        return Ensured(want, None)
    entry = CATALOG.get(want.spec)
    try:
        return Ensured(want, resolve_model(want.spec, want.kind, store.models_dir))
    except ModelError:
        if entry is None:
            raise  # its message names the model and how to import it
        if entry.kind != want.kind:
            raise ModelError(
                f"{want.key} names {want.spec!r}, which is a {entry.kind} model: name a "
                f"{want.kind} model there (see  bellad models list --available)"
            ) from None
        log.info("%s %r is not installed and intact: pulling it", want.key, want.spec)
    replacing = (store.models_dir / want.spec).exists()
    try:
        result = store.pull(want.spec)
    except FetchError as exc:
        raise ModelError(_cannot_fetch(want, store.endpoint, exc.reason, replacing)) from None
    path = resolve_model(want.spec, want.kind, store.models_dir)
    return Ensured(want, path, result if result.changed else None)


def _cannot_fetch(want: Wanted, endpoint: str, reason: str, replacing: bool) -> str:
    force = " --force" if replacing else ""
    return (
        f"cannot fetch {want.kind} model {want.spec!r} ({want.key}) from {endpoint} ({reason}): "
        f"on a device with no internet, run  bellad models pull {want.spec}  on a machine "
        f"that has internet, copy the {want.spec} folder over and run  "
        f"bellad models import PATH --name {want.spec}{force}"
    )
