"""The bounded queue and its overflow policies."""

from __future__ import annotations

import threading
import time

from bellad.queues import BoundedQueue
from tests.support import tools


def test_drop_oldest_keeps_the_newest() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "drop_oldest")
    assert q.put(1) is None
    assert q.put(2) is None
    assert q.put(3) == 1
    assert q.dropped == 1
    assert [q.get(0), q.get(0)] == [2, 3]


def test_drop_newest_keeps_the_oldest() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "drop_newest")
    q.put(1)
    q.put(2)
    assert q.put(3) == 3
    assert [q.get(0), q.get(0), q.get(0)] == [1, 2, None]


def test_put_never_blocks() -> None:
    q: BoundedQueue[int] = BoundedQueue(1)
    started = time.monotonic()
    for i in range(10_000):
        q.put(i)
    assert time.monotonic() - started < 1.0
    assert q.dropped == 9_999


def test_close_wakes_a_waiting_get_and_drains() -> None:
    q: BoundedQueue[int] = BoundedQueue(4)
    got: list[int | None] = []
    thread = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    thread.start()
    time.sleep(0.05)
    q.close()
    thread.join(2)
    assert got == [None]
    q2: BoundedQueue[int] = BoundedQueue(4)
    q2.put(7)
    q2.close()
    assert q2.get() == 7
    assert q2.get() is None


def test_clear_returns_what_waited() -> None:
    q: BoundedQueue[str] = BoundedQueue(3)
    q.put("a")
    q.put("b")
    assert q.clear() == ["a", "b"]
    assert len(q) == 0


def test_a_batched_put_wakes_a_waiting_get_only_once_the_batch_is_full() -> None:
    q: BoundedQueue[int] = BoundedQueue(10)
    woke = threading.Event()
    got: list[int | None] = []

    def consume() -> None:
        got.append(q.get(timeout=30))
        woke.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    tools.wait_until(lambda: len(q._cond._waiters) == 1, 5.0, "the consumer to wait")  # type: ignore[attr-defined]
    q.put(1, wake_at=3)
    q.put(2, wake_at=3)
    assert not woke.wait(0.3)  # two of three: the consumer sleeps on
    q.put(3, wake_at=3)
    assert woke.wait(5)
    assert got == [1]
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, None]
