"""The durable outbox: every result is on disk before MQTT sees it.

An append-only SQLite table in the state directory (WAL journal, synchronous
commits). A message is appended before it is handed to the broker and deleted
only when the broker acknowledges it, so a broker that is down, a network that
is gone, or a daemon that is killed loses nothing: the backlog goes out in
order after the next connection.

Bounds, stated and counted: at most ``max_messages`` rows and nothing older
than ``max_age_h`` hours. When a bound is hit, the oldest messages are dropped
first (a week-old "turn on the light" is worth less than the last minute's),
each drop is counted in :attr:`Outbox.dropped` and logged once per pruning.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bellad.errors import PublishError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Message:
    """One queued message; ``seq`` orders them."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    created: float  # wall-clock time it was queued


class Outbox:
    """A bounded, ordered, crash-safe queue in one SQLite file; thread-safe."""

    def __init__(self, path: Path, max_messages: int = 10_000, max_age_h: float = 168.0) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_h * 3600
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PublishError(f"outbox {path}: cannot open it: {exc}") from None
        self._depth = self._count()
        self.prune()

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def depth(self) -> int:
        """Messages waiting for the broker's acknowledgement."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped by the bounds since the outbox was created (survives restarts)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name='dropped'").fetchone()
        return int(row[0]) if row else 0

    def append(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Queue one message durably; returns its sequence number."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, created) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, time.time()),
            )
            self._depth += 1
            seq = int(cur.lastrowid or 0)
        if self._depth > self.max_messages:
            self.prune()
        return seq

    def peek(self, after: int = 0, limit: int = 100) -> list[Message]:
        """The oldest messages with a sequence number above ``after``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, created FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Message(int(r[0]), r[1], bytes(r[2]), int(r[3]), float(r[4])) for r in rows]

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
            self._depth -= deleted

    def oldest_age_s(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - float(row[0]))

    def prune(self) -> int:
        """Apply the bounds: drop expired messages, then the oldest beyond the size limit."""
        with self._lock:
            expired = self._db.execute(
                "DELETE FROM outbox WHERE created < ?", (time.time() - self.max_age_s,)
            ).rowcount
            excess = max(0, self._count() - self.max_messages)
            if excess:
                self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                    (excess,),
                )
            dropped = expired + excess
            if dropped:
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (dropped,),
                )
            self._depth = self._count()
        if dropped:
            log.warning(
                "outbox: dropped %d undelivered message(s) (%d older than %.0f h, %d over %d)",
                dropped,
                expired,
                self.max_age_s / 3600,
                excess,
                self.max_messages,
            )
        return dropped

    def close(self) -> None:
        with self._lock:
            self._db.close()
