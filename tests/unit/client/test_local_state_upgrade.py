"""State kept by an earlier version still reads after `mosix up`: fields the models dropped are pruned."""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3

from mosix.api import job
from mosix.client import client, local


def test_a_dropped_status_field_in_old_state_is_pruned_at_init(tmp_path: pathlib.Path) -> None:
    store = local.LocalStore(tmp_path)
    store.init()
    api = client.Client(store)
    api.submit(job.MosixJobSpec(command=["true"]), name="1001")
    # The job as an earlier version left it: with its queue position stored.
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        (body,) = conn.execute("SELECT body FROM objects WHERE name = '1001'").fetchone()
        old = json.loads(body) | {"status": {"phase": "Pending", "queuePosition": 3}}
        conn.execute("UPDATE objects SET body = ? WHERE name = '1001'", (json.dumps(old),))
    store.init()  # the next `mosix up`
    assert api.get_job("1001").status.phase == job.Phase.PENDING
