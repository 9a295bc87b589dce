"""A local stand-in for the model hub, for tests that must not touch the internet.

:class:`FakeHub` is an ``http.server`` in a thread that answers the few
endpoints ``huggingface_hub`` 2.x calls to download a repository:

* ``GET /api/models/<repo>[/revision/<rev>]`` (``?blobs=true`` adds sizes and
  hashes): the model info, whose ``sha`` is the commit a revision points at;
* ``GET /api/models/<repo>/tree/<rev>[/<path>]``: the file listing that
  ``snapshot_download`` reads;
* ``HEAD``/``GET /<repo>/resolve/<rev>/<path>``: the file, with the headers the
  client needs (``X-Repo-Commit``, ``ETag``, and for LFS files
  ``X-Linked-Etag``/``X-Linked-Size``), ``Content-Length`` and ``Range``.

As on the real hub, the ETag of an LFS file is its sha256 and that of a plain
git file its git blob sha1; the ``.bin`` and ``.onnx`` files of a repository
are LFS. LFS files are served directly rather than through a CDN redirect.

Every request is recorded (:attr:`FakeHub.requests`) and faults can be queued
per file: cut the connection after some bytes, stall until released, answer
with an error status, or flip a byte of what is sent.

:func:`catalog_repos` lays out, from model folders (the generated test models),
the two repositories of bellad's catalog that the tests pull: the Whisper
``tiny.en`` conversion and the DistilBERT SST-2 ONNX export.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".bin", ".onnx")
_CHUNK = 256 * 1024

WHISPER_REPO = "Systran/faster-whisper-tiny.en"
SENTIMENT_REPO = "Xenova/distilbert-base-uncased-finetuned-sst-2-english"


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _hashes(path: Path) -> tuple[int, str, str]:
    """``(size, sha256, git blob sha1)`` of a file, read in pieces."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as fh:
        while piece := fh.read(1 << 20):
            sha256.update(piece)
            sha1.update(piece)
    return size, sha256.hexdigest(), sha1.hexdigest()


@dataclass(frozen=True)
class HubFile:
    """One file of a repository as the hub describes it."""

    path: str
    source: Path
    size: int
    sha256: str
    git_sha1: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1

    def pointer_sha1(self) -> str:
        """The blob id of the LFS pointer git stores in place of the file."""
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {self.size}\n"
        ).encode()
        return git_blob_sha1(pointer)


@dataclass
class HubRepo:
    """A repository with a single commit."""

    repo_id: str
    commit: str
    files: dict[str, HubFile]


@dataclass(frozen=True)
class Request:
    """What the server saw and did for one request."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Cut:
    """Close the connection once the file offset ``at`` is reached."""

    at: int


@dataclass
class Stall:
    """Stop sending at file offset ``at`` until :attr:`release` is set."""

    at: int
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fail:
    """Answer with this HTTP status instead of the file."""

    status: int = 503


@dataclass
class Corrupt:
    """Flip the byte at file offset ``at`` in what is sent (every request, until cleared)."""

    at: int


Fault = Cut | Stall | Fail


class FakeHub:
    """The hub stand-in; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._corrupt: dict[str, Corrupt] = {}
        self._requests: list[Request] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop the kept-alive connections too: a stopped hub is gone."""
        self.release_stalls()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------

    def add_repo(self, repo_id: str, folder: Path) -> HubRepo:
        """Serve every file under ``folder`` as ``repo_id`` at one commit."""
        files = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            size, sha256, git_sha1 = _hashes(path)
            files[rel] = HubFile(rel, path, size, sha256, git_sha1, lfs=rel.endswith(LFS_SUFFIXES))
        commit = hashlib.sha1(
            repo_id.encode() + b"".join(f.sha256.encode() for f in files.values())
        )
        repo = HubRepo(repo_id, commit.hexdigest(), files)
        self.repos[repo_id] = repo
        return repo

    # -- faults and log --------------------------------------------------------

    def add_fault(self, filename: str, *faults: Fault | Corrupt) -> None:
        """Queue faults for requests of ``filename`` (a repo path): one per GET, in order."""
        with self._lock:
            for fault in faults:
                if isinstance(fault, Corrupt):
                    self._corrupt[filename] = fault
                else:
                    self._faults.setdefault(filename, []).append(fault)

    def clear_faults(self) -> None:
        self.release_stalls()
        with self._lock:
            self._faults.clear()
            self._corrupt.clear()

    def release_stalls(self) -> None:
        with self._lock:
            faults = [f for queue in self._faults.values() for f in queue]
        for fault in faults:
            if isinstance(fault, Stall):
                fault.release.set()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    def downloads(self, filename: str) -> list[Request]:
        """The GET requests of file ``filename`` (its last path component)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and "/resolve/" in r.path and r.filename == filename
        ]

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.pop(0) if queue else None

    def _corruption(self, path: str) -> Corrupt | None:
        with self._lock:
            return self._corrupt.get(path)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, alive=True)

    def finish(self) -> None:
        self.server.hub._track(self.connection, alive=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet: the hub records requests itself."""

    # -- dispatch --------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if m := _RESOLVE.match(path):
            self._resolve(m["repo"], m["rev"], m["path"], head)
        elif not head and (m := _TREE.match(path)):
            self._tree(m["repo"], m["rev"], m["path"] or "")
        elif not head and (m := _INFO.match(path)):
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            self._info(m["repo"], m["rev"] or "main", blobs)
        else:
            self._error(404, "", "not an endpoint of this fake hub")

    # -- API -------------------------------------------------------------------

    def _repo(self, repo_id: str, rev: str) -> HubRepo | None:
        repo = self.server.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if rev not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", commit=None)
            return None
        return repo

    def _info(self, repo_id: str, rev: str, blobs: bool) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        siblings = []
        for f in repo.files.values():
            sibling: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sibling["size"] = f.size
                sibling["blobId"] = f.pointer_sha1() if f.lfs else f.git_sha1
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(sibling)
        body = {
            "_id": repo.commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": siblings,
        }
        self._json(body, repo.commit)

    def _tree(self, repo_id: str, rev: str, prefix: str) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        entries: list[dict[str, Any]] = []
        for f in repo.files.values():
            if prefix and not f.path.startswith(prefix.rstrip("/") + "/"):
                continue
            entry: dict[str, Any] = {"type": "file", "path": f.path, "size": f.size}
            entry["oid"] = f.pointer_sha1() if f.lfs else f.git_sha1
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(entry)
        self._json(entries, repo.commit)

    def _json(self, body: Any, commit: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        self.wfile.write(data)
        self._log(200, len(data))

    # -- files -----------------------------------------------------------------

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        f = repo.files.get(path)
        if f is None:
            self._error(404, "EntryNotFound", f"{path} does not exist", commit=repo.commit)
            return
        fault = None if head else self.server.hub._next_fault(path)
        if isinstance(fault, Fail):
            self._error(fault.status, "", "injected failure", commit=repo.commit)
            return
        start = self._range_start(f.size)
        if start is None:
            self._error(416, "", "bad range", commit=repo.commit)
            return
        self._file_headers(repo, f, start)
        if head:
            self._log(self._status(start), 0)
            return
        sent = self._send_body(f, start, fault)
        self._log(self._status(start), sent)

    def _range_start(self, size: int) -> int | None:
        header = self.headers.get("Range")
        if header is None:
            return 0
        m = re.fullmatch(r"bytes=(\d+)-", header.strip())
        if m is None or int(m[1]) >= size:
            return None
        return int(m[1])

    def _status(self, start: int) -> int:
        return 206 if self.headers.get("Range") else 200

    def _file_headers(self, repo: HubRepo, f: HubFile, start: int) -> None:
        self.send_response(self._status(start))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(f.size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{f.etag}"')
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
        if self.headers.get("Range"):
            self.send_header("Content-Range", f"bytes {start}-{f.size - 1}/{f.size}")
        self.end_headers()

    def _send_body(self, f: HubFile, start: int, fault: Fault | None) -> int:
        corrupt = self.server.hub._corruption(f.path)
        stop_at = fault.at if isinstance(fault, Cut | Stall) else f.size
        sent = 0
        try:
            for offset, chunk in _read_chunks(f.source, start, max(stop_at, start)):
                if corrupt is not None and offset <= corrupt.at < offset + len(chunk):
                    i = corrupt.at - offset
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.flush()
            if isinstance(fault, Stall):
                fault.reached.set()
                fault.release.wait(timeout=60)
            if isinstance(fault, Cut | Stall):
                self._drop_connection()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return sent

    def _drop_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- helpers ---------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._log(status, 0)

    def _log(self, status: int, body_bytes: int) -> None:
        self.server.hub._record(
            Request(
                self.command,
                unquote(urlsplit(self.path).path),
                self.headers.get("Range"),
                status,
                body_bytes,
            )
        )


def _read_chunks(source: Path, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` pieces of ``source`` from ``start`` up to ``stop``."""
    with source.open("rb") as fh:
        fh.seek(start)
        offset = start
        while offset < stop:
            chunk = fh.read(min(_CHUNK, stop - offset))
            if not chunk:
                return
            yield offset, chunk
            offset += len(chunk)


# -- the catalog's repositories, from model folders ---------------------------------


def catalog_repos(root: Path, whisper: Path, sentiment: Path) -> dict[str, Path]:
    """Folders under ``root`` laid out like the hub repositories of tiny.en and distilbert-sst2.

    ``whisper`` is a CTranslate2 Whisper folder, served with a model card as
    the Systran conversion is. ``sentiment`` is an ONNX classifier folder,
    served as the Xenova export is: the float model as ``onnx/model.onnx``, its
    dynamic int8 quantization as ``onnx/model_quantized.onnx`` (what bellad
    takes), with the tokenizer files beside them.
    """
    whisper_repo = root / "whisper"
    shutil.copytree(whisper, whisper_repo)
    (whisper_repo / "README.md").write_text("a model card\n")
    return {WHISPER_REPO: whisper_repo, SENTIMENT_REPO: _onnx_export(sentiment, root / "sentiment")}


def _onnx_export(model: Path, repo: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    (repo / "onnx").mkdir(parents=True)
    shutil.copyfile(model / "model.onnx", repo / "onnx" / "model.onnx")
    quantize_dynamic(
        repo / "onnx" / "model.onnx",
        repo / "onnx" / "model_quantized.onnx",
        weight_type=QuantType.QInt8,
    )
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(model / name, repo / name)
    vocab = json.loads((model / "tokenizer.json").read_text())["model"]["vocab"]
    (repo / "vocab.txt").write_text("".join(f"{t}\n" for t in sorted(vocab, key=vocab.get)))
    (repo / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return repo
