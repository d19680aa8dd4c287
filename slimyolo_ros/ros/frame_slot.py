"""The newest-frame mailboxes between the image callbacks and the inference worker: one slot per
camera, so the node never falls behind a camera, because a frame that arrives while another of the
same camera waits replaces it. One lock for all of them: the worker waits for any camera."""

from __future__ import annotations

import threading
from typing import Any


class FrameSlots:
    """``put(i, ...)`` replaces what camera ``i`` has waiting (and says so); ``take`` blocks until a
    frame waits and hands out the next camera's (round-robin) or, with ``batch``, every waiting one."""

    def __init__(self, cameras: int = 1) -> None:
        self._cond = threading.Condition()
        self._items: list[tuple[Any, float] | None] = [None] * cameras
        self._next = 0  # the camera served first next time: no camera waits behind a faster one
        self._closed = False

    def put(self, i: int, msg: Any, t_recv: float) -> bool:
        with self._cond:
            replaced = self._items[i] is not None
            self._items[i] = (msg, t_recv)
            self._cond.notify()
        return replaced

    def take(self, batch: bool = False) -> list[tuple[int, Any, float]] | None:
        """[(camera, msg, t_recv), ...] in round-robin order; None once closed with nothing waiting."""
        with self._cond:
            while not self._closed and all(item is None for item in self._items):
                self._cond.wait()
            n = len(self._items)
            order = [(self._next + k) % n for k in range(n)]
            waiting = [i for i in order if self._items[i] is not None]
            if not waiting:
                return None
            chosen = waiting if batch else waiting[:1]
            self._next = (chosen[-1] + 1) % n
            out = []
            for i in chosen:
                msg, t_recv = self._items[i]  # type: ignore[misc]
                self._items[i] = None
                out.append((i, msg, t_recv))
            return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
