"""The durable outbox: order, acknowledgement, bounds, crash safety."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from bellad.errors import PublishError
from bellad.outbox import Outbox


def test_messages_come_out_in_order_until_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.append("t", f"m{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs)
    assert [m.payload for m in box.peek()] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [m.payload for m in box.peek(after=seqs[1], limit=2)] == [b"m2", b"m3"]
    box.ack(seqs[0])
    box.ack(seqs[2])
    assert [m.payload for m in box.peek()] == [b"m1", b"m3", b"m4"]
    assert box.depth == 3


def test_the_backlog_survives_a_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(3):
        box.append("t", bytes([i]))
    box.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert again.depth == 3
    assert [m.payload for m in again.peek()] == [b"\x00", b"\x01", b"\x02"]


def _append_forever(path: str) -> None:
    box = Outbox(Path(path), max_messages=100_000_000)  # no bound drops a row here
    i = 0
    while True:
        box.append("t", str(i).encode())
        i += 1


def test_a_killed_writer_loses_nothing_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    proc = multiprocessing.get_context("spawn").Process(target=_append_forever, args=(str(path),))
    proc.start()
    time.sleep(1.5)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    box = Outbox(path, max_messages=100_000_000)
    payloads = [int(m.payload) for m in box.peek(limit=1_000_000)]
    assert payloads and payloads == list(range(len(payloads)))  # a gap-free prefix


def test_size_bound_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=10)
    for i in range(15):
        box.append("t", str(i).encode())
    assert box.depth == 10
    assert [int(m.payload) for m in box.peek()] == list(range(5, 15))
    assert box.dropped == 5
    box.close()
    assert Outbox(tmp_path / "o.sqlite", max_messages=10).dropped == 5  # counted across restarts


def test_age_bound(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_age_h=1.0)
    box.append("t", b"old")
    box._db.execute("UPDATE outbox SET created = created - 7200")
    box.append("t", b"new")
    assert box.prune() == 1
    assert [m.payload for m in box.peek()] == [b"new"]
    assert box.oldest_age_s() is not None and box.oldest_age_s() < 60  # type: ignore[operator]


def test_an_unwritable_place_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PublishError, match=r"outbox .*file/o.sqlite: cannot open it"):
        Outbox(blocker / "o.sqlite")
