"""One warning per kind per period, so a stream of bad input is a few readable lines, not a flood; the
next line of a kind says how many were held back."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class ThrottledWarnings:
    """``warn(kind, text)`` logs through ``log`` at most once per ``period_s`` per kind."""

    def __init__(self, log: Callable[[str], object], period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, kind: str, text: str) -> bool:
        """Log ``text`` unless ``kind`` was logged less than ``period_s`` ago; True when logged."""
        now = self._clock()
        if now - self._last.get(kind, -math.inf) < self.period_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        self._log(text + (f" (+{held} more of this kind in the last {self.period_s:.0f} s)" if held else ""))
        return True
