"""HomeOutput tells whoever listens to a job's output when it grows or the job finishes (held log requests)."""

from __future__ import annotations

import pathlib

from mosix.agent import homeio


def test_listeners_hear_of_growth_of_their_key_and_of_their_jobs_end(tmp_path: pathlib.Path) -> None:
    home = homeio.HomeOutput(tmp_path)
    heard: list[str] = []
    stop_job = home.listen("ns/job", lambda: heard.append("job"))
    home.listen("ns/job_1", lambda: heard.append("process 1"))
    home.listen("ns/other", lambda: heard.append("other"))

    home.append("ns/job", "stderr", 0, b"e\n")
    home.append("ns/job", "stdout", 0, b"")  # nothing new: nobody told
    assert heard == ["job"]

    home.append("ns/job_1", "stdout", 0, b"x\n")
    assert heard == ["job", "process 1"]

    assert not home.finished("ns/job_1")
    home.set_finished(["ns/job"])
    assert home.finished("ns/job") and home.finished("ns/job_1") and not home.finished("ns/other")
    assert sorted(heard[2:]) == ["job", "process 1"]  # the job and its processes: no more output will come
    home.set_finished(["ns/job"])  # listed again: nothing new to tell
    assert len(heard) == 4

    stop_job()
    home.append("ns/job", "stdout", 0, b"late\n")
    assert len(heard) == 4
    home.set_finished([])  # the job is gone from the store
    assert not home.finished("ns/job")
