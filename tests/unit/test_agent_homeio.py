"""HomeOutput tells whoever listens to a job's output when it grows or the job finishes (held log requests)."""

from __future__ import annotations

import pathlib

from mosix.agent import homeio


def test_listeners_hear_of_growth_of_their_jobs_output_and_of_its_end(tmp_path: pathlib.Path) -> None:
    home = homeio.HomeOutput(tmp_path)
    heard: list[str] = []
    stop_job = home.listen("ns/job", lambda: heard.append("job"))
    home.listen("ns/job_1", lambda: heard.append("process 1"))  # a gang's process: hears its whole job
    home.listen("ns/other", lambda: heard.append("other"))

    home.append("ns/job", "stderr", 0, b"e\n")
    assert sorted(heard) == ["job", "process 1"]
    home.append("ns/job", "stdout", 0, b"")  # nothing new: nobody told
    home.append("ns/job_2", "stdout", 0, b"x\n")  # another process of the job
    assert sorted(heard) == ["job", "job", "process 1", "process 1"]
    heard.clear()

    assert not home.finished("ns/job_1")
    home.set_finished(["ns/job"])
    assert home.finished("ns/job") and home.finished("ns/job_1") and not home.finished("ns/other")
    assert sorted(heard) == ["job", "process 1"]  # no more output will come
    home.set_finished(["ns/job"])  # listed again: nothing new to tell
    assert len(heard) == 2

    stop_job()
    home.append("ns/job", "stdout", 0, b"late\n")
    assert heard[2:] == ["process 1"]
    home.set_finished([])  # the job is gone from the store
    assert not home.finished("ns/job")
