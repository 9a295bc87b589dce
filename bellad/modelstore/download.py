"""Downloading a catalog model's files from the hub, checked and resumable.

:class:`Downloads` lists a repository at a revision (``model_info`` with file
metadata), fetches each file with the hub client's ``http_get`` into
``<models dir>/.cache/downloads/``, and checks it against the hub's own
checksum: the sha256 of an LFS file, the git blob id of a plain one (the hub
client checks sizes only). A partial download is kept as ``<checksum>.part``
and continued with an HTTP Range request by the next pull.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bellad import __version__
from bellad.errors import ModelError
from bellad.modelstore.catalog import CatalogEntry
from bellad.modelstore.files import hash_file, human_size
from bellad.modelstore.hubclient import hub_errors
from bellad.modelstore.layout import lacking
from bellad.modelstore.manifest import FileRecord

if TYPE_CHECKING:
    from huggingface_hub import HfFileMetadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """A file of a hub repository that a model takes."""

    repo_path: str
    local: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # plain git files

    @property
    def key(self) -> str:
        """What the download cache calls this file: the hub's checksum of it."""
        return self.sha256 or self.blob_id or "?"


class Downloads:
    """Fetches files from the hub at ``endpoint`` into ``cache_dir``, each checked.

    What the hub client raises becomes a one-line :class:`ModelError` (see
    :func:`~bellad.modelstore.hubclient.hub_errors`).
    """

    def __init__(self, endpoint: str, cache_dir: Path) -> None:
        self.endpoint = endpoint
        self.cache_dir = cache_dir

    def remote_files(self, entry: CatalogEntry, revision: str) -> tuple[str, list[RemoteFile]]:
        """The commit ``revision`` points at, and the files of ``entry`` there."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, library_name="bellad", library_version=__version__)
        with hub_errors(entry.name, self.endpoint):
            info = api.model_info(entry.repo_id, revision=revision, files_metadata=True)
        if not info.sha:
            raise ModelError(f"the hub at {self.endpoint} gave no commit for {entry.repo_id}")
        remote = [
            RemoteFile(
                repo_path=s.rfilename,
                local=entry.local_name(s.rfilename),
                size=s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
            for s in info.siblings or []
            if any(fnmatch.fnmatchcase(s.rfilename, pattern) for pattern in entry.files)
        ]
        missing = lacking(entry.kind, (f.local for f in remote))
        if missing:
            raise ModelError(
                f"{entry.repo_id}@{info.sha[:7]} lacks {', '.join(missing)}: "
                f"it cannot be installed as {entry.kind} model {entry.name!r}"
            )
        return info.sha, remote

    def check_space(self, entry: CatalogEntry, remote: Sequence[RemoteFile], where: Path) -> None:
        """Fail unless ``where`` has room for what is still to download."""
        with hub_errors(entry.name, self.endpoint):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            needed = 0
            for f in remote:
                done = sum(p.stat().st_size for p in self._cached(f.key) if p.is_file())
                needed += max((f.size or 0) - done, 0)
            free = shutil.disk_usage(where).free
        if needed > free:
            raise ModelError(
                f"not enough space in {where} for model {entry.name!r}: it needs "
                f"{human_size(needed)} more and {human_size(free)} is free: free some space "
                f"or choose another models dir"
            )

    def _cached(self, key: str) -> tuple[Path, Path]:
        """The finished download called ``key`` in the cache, and its partial file."""
        return self.cache_dir / key, self.cache_dir / f"{key}.part"

    def fetch(self, entry: CatalogEntry, commit: str, f: RemoteFile) -> tuple[Path, FileRecord]:
        """Download one file into the cache (resuming a partial one) and check it."""
        with hub_errors(entry.name, self.endpoint, f.repo_path):
            return self._fetch(entry, commit, f)

    def _fetch(self, entry: CatalogEntry, commit: str, f: RemoteFile) -> tuple[Path, FileRecord]:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(entry.repo_id, f.repo_path, revision=commit, endpoint=self.endpoint)
        meta = get_hf_file_metadata(
            url, endpoint=self.endpoint, library_name="bellad", library_version=__version__
        )
        algo, expected = _hub_checksum(f, meta)
        blob, part = self._cached(expected)
        if blob.is_file():  # downloaded by a pull that did not finish installing
            sha256 = _verify_download(blob, algo, expected, f.repo_path, entry.name)
        else:
            self._download(url, meta, part, f)
            sha256 = _verify_download(part, algo, expected, f.repo_path, entry.name)
            part.replace(blob)
        return blob, FileRecord(f.local, blob.stat().st_size, sha256)

    def _download(self, url: str, meta: HfFileMetadata, part: Path, f: RemoteFile) -> None:
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        size = meta.size if meta.size is not None else f.size
        resume = part.stat().st_size if part.is_file() else 0
        if size is not None and resume > size:
            part.unlink()
            resume = 0
        headers = build_hf_headers(library_name="bellad", library_version=__version__)
        if urlsplit(meta.location).netloc != urlsplit(url).netloc:
            headers.pop("authorization", None)  # a CDN gets no token
        if resume:
            log.info("resuming %s at %s of %s", f.repo_path, human_size(resume), _size(size))
        else:
            log.info("downloading %s (%s)", f.repo_path, _size(size))
        with part.open("ab") as fh:
            http_get(
                meta.location,
                fh,
                resume_size=resume,
                headers=headers,
                expected_size=size,
                displayed_filename=f.local,
            )


def _size(n: int | None) -> str:
    return human_size(n) if n is not None else "size unknown"


def _hub_checksum(f: RemoteFile, meta: HfFileMetadata) -> tuple[str, str]:
    """``(algorithm, hex digest)`` the hub vouches for: sha256 (LFS) or git blob sha1."""
    etag = (meta.etag or "").lower()
    if f.sha256 is not None:
        expected = ("sha256", f.sha256.lower())
    elif f.blob_id is not None:
        expected = ("git-sha1", f.blob_id.lower())
    elif re.fullmatch(r"[0-9a-f]{64}", etag):
        expected = ("sha256", etag)
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        expected = ("git-sha1", etag)
    else:
        raise ModelError(f"the hub gave no checksum for {f.repo_path}: it cannot be verified")
    if etag and etag != expected[1]:
        log.warning(
            "%s: the hub's ETag %s differs from its file listing's %s %s: checking against "
            "the listing",
            f.repo_path,
            etag[:12],
            expected[0],
            expected[1][:12],
        )
    return expected


def _verify_download(path: Path, algo: str, expected: str, repo_path: str, name: str) -> str:
    """Check a downloaded file against the hub's checksum; return its sha256."""
    sha256, git_sha1 = hash_file(path, git_blob=algo == "git-sha1")
    actual = sha256 if algo == "sha256" else git_sha1
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"{repo_path} of model {name!r} does not match the hub's {algo} (expected "
            f"{expected[:12]}, got {(actual or '')[:12]}): the download was damaged and "
            f"removed: run  bellad models pull {name}"
        )
    return sha256
