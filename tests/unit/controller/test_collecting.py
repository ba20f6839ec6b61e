"""While a control loop runs, full garbage collections happen after its rounds, never in the middle."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mosix.controller import collecting


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generation-2 collections that start while the test runs (one entry each)."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def allocate(n: int = 2_000_000) -> list[list[int]]:
    """Many long-lived container objects: enough young collections for CPython to start full ones."""
    return [[i] for i in range(n)]


def test_allocations_alone_start_full_collections(full_collections: list[int]) -> None:
    kept = allocate()
    assert full_collections, "no full collection: the next test would prove nothing"
    del kept


def test_in_a_control_loop_they_wait_for_the_end_of_the_round(full_collections: list[int]) -> None:
    before = gc.get_threshold()
    with collecting.BetweenRounds() as gcs:
        kept = allocate()  # a round
        assert full_collections == []
        assert gcs.after_round()  # due: CPython would have collected by now
        assert len(full_collections) == 1
        assert not gcs.after_round()  # not due again yet
    assert gc.get_threshold() == before
    del kept
