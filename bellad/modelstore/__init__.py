"""Model provisioning: pull, import, verify and resolve the models bellad runs.

A device gets its models once and never needs a network for them again. Every
installed model is a folder ``<models dir>/<name>/`` holding the model files
and ``bellad-manifest.json``: the kind, the size and sha256 of every file, and
where the files came from (hub repository and commit, or the imported path).

One module per concern:

* :mod:`~bellad.modelstore.layout`: the kinds of model and the files each needs;
* :mod:`~bellad.modelstore.catalog`: the names ``pull`` knows and their repositories;
* :mod:`~bellad.modelstore.manifest`: ``bellad-manifest.json``;
* :mod:`~bellad.modelstore.verify`: checking a folder against its manifest, with stamps;
* :mod:`~bellad.modelstore.files`: hashing, safe paths, copying, flushing;
* :mod:`~bellad.modelstore.hubclient`: the hub client's endpoint, offline mode, errors;
* :mod:`~bellad.modelstore.download`: checked, resumable downloads from the hub;
* :mod:`~bellad.modelstore.importing`: models from folders and archives;
* :mod:`~bellad.modelstore.install`: atomic installs and removals under a lock;
* :mod:`~bellad.modelstore.store`: :class:`ModelStore`, the models dir and its commands;
* :mod:`~bellad.modelstore.resolve`: :func:`resolve_model`, what the daemon calls at start;
* :mod:`~bellad.modelstore.ensure`: the models a config names, pulled if missing.

Nothing here imports ``huggingface_hub`` at module level, so the daemon can
call :func:`enforce_offline` before anything loads it.
"""

from bellad.modelstore.catalog import CATALOG, DEFAULT_MODEL, CatalogEntry, catalog_entry
from bellad.modelstore.ensure import Ensured, Wanted, ensure_model, wanted_models
from bellad.modelstore.files import hash_file, human_size
from bellad.modelstore.hubclient import enforce_offline, hub_endpoint, prepare_hub_client
from bellad.modelstore.importing import unpack
from bellad.modelstore.layout import KINDS, Kind, detect_kind, missing_files
from bellad.modelstore.manifest import MANIFEST_NAME, FileRecord, Manifest
from bellad.modelstore.resolve import builtin_sentiment_dir, resolve_model
from bellad.modelstore.store import InstalledModel, InstallResult, ModelStore, default_models_dir
from bellad.modelstore.verify import Check, check_model, record_stamps

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "KINDS",
    "MANIFEST_NAME",
    "CatalogEntry",
    "Check",
    "Ensured",
    "FileRecord",
    "InstallResult",
    "InstalledModel",
    "Kind",
    "Manifest",
    "ModelStore",
    "Wanted",
    "builtin_sentiment_dir",
    "catalog_entry",
    "check_model",
    "default_models_dir",
    "detect_kind",
    "enforce_offline",
    "ensure_model",
    "hash_file",
    "hub_endpoint",
    "human_size",
    "missing_files",
    "prepare_hub_client",
    "record_stamps",
    "resolve_model",
    "unpack",
    "wanted_models",
]
