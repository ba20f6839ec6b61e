"""Full garbage collections between control rounds, not inside them.

A controller that keeps views of thousands of jobs holds millions of objects, and CPython's automatic
collection of its oldest generation walks them all (about 0.3 s at 10,000 jobs) whenever allocations
happen to trigger it: in the middle of a round, where it was the whole of the round's p99
(bench/scale.py). While a control loop runs, it takes those collections over: automatic collections
keep to the two young generations, and the oldest is collected after a round, once CPython would have
collected it (its count reached the threshold) and at most about a tenth of the time.
"""

from __future__ import annotations

import gc
import time
from types import TracebackType

NEVER = 1 << 30  # a threshold the oldest generation's count does not reach
SHARE = 0.1  # at most this share of the time in full collections


class BetweenRounds:
    """`with BetweenRounds() as gcs:` … `gcs.after_round()` after each round; the thresholds come back at exit."""

    def __init__(self) -> None:
        self._thresholds = gc.get_threshold()
        self._last_end = 0.0
        self._last_took = 0.0

    def __enter__(self) -> BetweenRounds:
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, NEVER)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        gc.set_threshold(*self._thresholds)

    def after_round(self) -> bool:
        """Collect every generation if it is due (and the last one is far enough behind); whether it ran."""
        if gc.get_count()[2] < self._thresholds[2]:
            return False
        if time.monotonic() - self._last_end < self._last_took * (1 - SHARE) / SHARE:
            return False
        began = time.monotonic()
        gc.collect()
        self._last_end = time.monotonic()
        self._last_took = self._last_end - began
        return True
