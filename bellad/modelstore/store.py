"""The models dir: what is installed, and the commands that change it.

Every installed model is a folder ``<models dir>/<name>/`` holding the model
files and ``bellad-manifest.json``. :class:`ModelStore` lists and checks
them, and pulls, imports and removes models; the changes themselves are made
by :mod:`bellad.modelstore.install`, one command at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bellad.errors import ModelError
from bellad.modelstore import install
from bellad.modelstore.catalog import CATALOG, CatalogEntry, catalog_entry
from bellad.modelstore.download import Downloads
from bellad.modelstore.hubclient import hub_endpoint, prepare_hub_client
from bellad.modelstore.importing import import_plan, model_root, unpack
from bellad.modelstore.layout import NAME, Kind
from bellad.modelstore.manifest import MANIFEST_NAME, Manifest, installed_now
from bellad.modelstore.verify import Check, check_model, record_stamps

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".cache"


def default_models_dir() -> Path:
    """``$STATE_DIRECTORY/models`` under systemd, else ``/var/lib/bellad/models``."""
    state = os.environ.get("STATE_DIRECTORY")
    base = Path(state.split(":")[0]) if state else Path("/var/lib/bellad")
    return base / "models"


@dataclass(frozen=True)
class InstalledModel:
    """A folder in the models dir, with its manifest (if any) and a quick check."""

    name: str
    path: Path
    manifest: Manifest | None
    check: Check | None
    error: str | None = None

    @property
    def intact(self) -> Manifest | None:
        """The manifest, if every file matched it; else None."""
        return self.manifest if self.check is not None and self.check.ok else None

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
        except (OSError, ValueError) as exc:
            return InstalledModel(path.name, path, None, None, f"unreadable manifest: {exc}")
        return InstalledModel(path.name, path, manifest, check_model(path, manifest, full=full))

    def _target(self, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise ModelError(
                f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-'"
            )
        return self.models_dir / name

    # -- pull ----------------------------------------------------------------

    def pull(self, name: str, *, revision: str | None = None, force: bool = False) -> InstallResult:
        """Download catalog model ``name`` and install it (a no-op if already intact)."""
        entry = catalog_entry(name)
        target = self._target(name)
        with install.locked(self.models_dir):
            prepare_hub_client(self.endpoint)
            kept = None if force else self._intact(target, entry)
            if kept is not None and revision in (None, kept.source.get("revision")):
                return InstallResult(kept, target, changed=False)
            hub = Downloads(self.endpoint, self.cache_dir)
            commit, remote = hub.remote_files(entry, revision or "main")
            if kept is not None and kept.source.get("revision") == commit:
                return InstallResult(kept, target, changed=False)
            hub.check_space(entry, remote, self.models_dir)
            fetched = [hub.fetch(entry, commit, f) for f in remote]
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
                installed=installed_now("pull"),
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
        manifest = found.intact
        if manifest is None:
            log.warning("model %s is %s: downloading it again", target.name, found.status)
            return None
        if manifest.source.get("type") == "hub" and manifest.source.get("repo") != entry.repo_id:
            return None
        log.info("model %s is installed (%s)", target.name, manifest.origin)
        return manifest

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
        with install.locked(self.models_dir):
            unpack_dir = install.scratch(self.models_dir, install.STAGING, "unpack")
            try:
                root = source
                if source.is_file():
                    unpack(source, unpack_dir)
                    root = unpack_dir
                manifest, files = import_plan(model_root(root), source, name, kind)
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
        installed = self._inspect(target, full=False).intact
        if installed is None or set(installed.files) != set(incoming.files):
            return None
        if not all(f.sha256 for f in incoming.files):
            return None
        log.info("model %s is already installed with the same files", target.name)
        return installed

    # -- remove --------------------------------------------------------------

    def remove(self, name: str) -> None:
        """Delete an installed model: one rename makes it vanish, then the files go."""
        target = self._target(name)
        with install.locked(self.models_dir):
            if not target.is_dir():
                raise ModelError(f"model {name!r} is not installed in {self.models_dir}")
            install.remove(self.models_dir, name)

    # -- installing ----------------------------------------------------------

    def _install(
        self, manifest: Manifest, files: list[tuple[Path, str]], *, link: bool, move: bool = False
    ) -> Manifest:
        return install.install(
            self.models_dir, manifest, files, link=link, move=move, on_staged=self._on_staged
        )
