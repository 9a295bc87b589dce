"""A bounded queue with a stated overflow policy.

A live producer never blocks on a full queue: ``put`` always returns at once.
When the queue is full, the policy decides which item is dropped (the oldest
waiting one, or the new one); drops are counted, and the dropped item is
returned so the caller can log or account for it. A producer that can wait (a
file, not a microphone) uses ``put_wait`` instead: backpressure, nothing dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Overflow = Literal["drop_oldest", "drop_newest"]


class BoundedQueue(Generic[T]):
    """Thread-safe FIFO of at most ``maxsize`` items; ``put`` never blocks."""

    def __init__(self, maxsize: int, overflow: Overflow = "drop_oldest") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.overflow = overflow
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T, wake_at: int = 1) -> T | None:
        """Add ``item``; return the item dropped to make room, if any.

        A waiting ``get`` is woken once ``wake_at`` items wait (or its timeout
        passes): a producer can hand items over in batches.
        """
        with self._cond:
            dropped: T | None = None
            if len(self._items) >= self.maxsize:
                self.dropped += 1
                if self.overflow == "drop_newest":
                    return item
                dropped = self._items.popleft()
            self._items.append(item)
            if len(self._items) >= wake_at:
                self._cond.notify_all()
            return dropped

    def put_wait(self, item: T, stop: threading.Event, poll: float = 0.1) -> bool:
        """Add ``item`` once there is room (backpressure); False if ``stop`` was set first."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if stop.is_set():
                    return False
                self._cond.wait(poll)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, or None after ``timeout`` or once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()  # room for a waiting put_wait
            return item

    def clear(self) -> list[T]:
        """Remove and return everything waiting."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        """Wake every waiting ``get``; later gets return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
