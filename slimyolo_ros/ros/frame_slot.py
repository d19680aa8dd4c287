"""The one-frame mailbox between the image callback and the inference worker: the node never falls
behind the camera, because a frame that arrives while another waits replaces it."""

from __future__ import annotations

import threading
from typing import Any


class FrameSlot:
    """A one-message mailbox: ``put`` replaces what is waiting (and says so), ``take`` blocks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[Any, float] | None = None
        self._closed = False

    def put(self, msg: Any, t_recv: float) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = (msg, t_recv)
            self._cond.notify()
        return replaced

    def take(self) -> tuple[Any, float] | None:
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
