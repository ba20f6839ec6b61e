"""Which way the agent moves a job: what the user asked, else by its resident memory."""

from __future__ import annotations

import pytest

from mosix.agent.__main__ import use_postcopy
from mosix.api.job import MigrationMethod

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("asked", "rss_mib", "lazy"),
    [
        (MigrationMethod.AUTO, 100, False),
        (MigrationMethod.AUTO, 257, True),
        (MigrationMethod.POST_COPY, 1, True),  # asked: even a small job
        (MigrationMethod.STOP_AND_COPY, 4096, False),  # asked: even a large one
    ],
)
def test_asked_method_wins_else_size_decides(asked: MigrationMethod, rss_mib: int, lazy: bool) -> None:
    assert use_postcopy(asked, rss_mib * MIB, postcopy_above_mb=256) is lazy
