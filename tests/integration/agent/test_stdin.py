"""A job's standard input (mosrun -i) under real runc and CRIU: fed into its stdin pipe from a source
addressed by logical offset; input sitting unread in the pipe at a dump is neither lost nor repeated
when the job continues, is restored on another agent, or reaches EOF."""

from __future__ import annotations

import collections.abc
import pathlib
import threading

import pytest

from mosix.agent import checkpoints, containers, jobs

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
MakeAgent = collections.abc.Callable[..., containers.Manager]

# Reads a line at a time, slowly, so most of the input waits in the pipe when the job is dumped.
ECHO_SLOWLY = ("sh", "-c", 'while read -r l; do echo "$l"; sleep 0.03; done; echo END')


class Input:
    """The home's copy of a job's input, as the agent's source reads it."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = False
        self.lock = threading.Lock()

    def add(self, text: str, end: bool = False) -> None:
        with self.lock:
            self.data += text.encode()
            self.ended = self.ended or end

    def read(self, name: str, offset: int) -> tuple[bytes, bool]:
        with self.lock:
            return self.data[offset:], self.ended


def lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i}\n" for i in range(start, start + n))


@pytest.mark.root
def test_input_reaches_the_job_and_its_end_is_eof(agent: containers.Manager, wait_lines: WaitLines) -> None:
    source = Input()
    agent.input_source = source.read
    agent.run(jobs.Job(name="cat", args=("testload", "--cat"), stdin=True))
    source.add("hello\n")
    assert wait_lines(agent.stdout_path("cat"), 1) == ["hello"]
    source.add("world\n", end=True)
    assert agent.wait("cat", timeout=60) == 0
    assert agent.stdout_path("cat").read_text() == "hello\nworld\n"


@pytest.mark.root
def test_without_stdin_the_job_reads_eof_at_once(agent: containers.Manager) -> None:
    agent.input_source = Input().read  # there, but not for this job
    agent.run(jobs.Job(name="noin", args=("sh", "-c", "cat; echo rc=$?")))
    assert agent.wait("noin", timeout=60) == 0
    assert agent.stdout_path("noin").read_text() == "rc=0\n"


@pytest.mark.root
def test_input_in_the_pipe_at_a_migration_dump_arrives_once_on_the_new_node(
    make_agent: MakeAgent, wait_lines: WaitLines
) -> None:
    source = Input()
    source.add(lines(150), end=True)  # all of it fits in the pipe at once: most is unread at the dump
    a, b = make_agent("n1"), make_agent("n2")
    a.input_source = b.input_source = source.read
    a.run(jobs.Job(name="mover", args=ECHO_SLOWLY, stdin=True))
    wait_lines(a.stdout_path("mover"), 20)
    moved = a.stop_into("mover", a.state_dir / "out" / "set", "migration")
    meta = checkpoints.read_meta(moved)
    before = a.stdout_path("mover").read_bytes()[: meta.stdout_offset].decode()
    assert 0 < meta.stdin_offset < len(source.data)  # the process had read part of it, not all
    b.restore("mover", moved)
    assert b.wait("mover", timeout=120) == 0
    assert before + b.stdout_path("mover").read_text() == lines(150) + "END\n"


@pytest.mark.root
def test_a_checkpoint_that_leaves_the_job_running_gives_back_the_unread_input(
    make_agent: MakeAgent, wait_lines: WaitLines
) -> None:
    source = Input()
    source.add(lines(100))
    a, b = make_agent("n1"), make_agent("n2")
    a.input_source = b.input_source = source.read
    a.run(jobs.Job(name="stay", args=ECHO_SLOWLY, stdin=True))
    wait_lines(a.stdout_path("stay"), 10)
    ckpt = a.checkpoint("stay", keep_running=True)
    source.add(lines(50, start=100), end=True)
    assert a.wait("stay", timeout=120) == 0  # it went on here, with every line once, in order
    assert a.stdout_path("stay").read_text() == lines(150) + "END\n"
    meta = checkpoints.read_meta(ckpt)  # and the same set, restored elsewhere, continues from its input offset
    before = a.stdout_path("stay").read_bytes()[: meta.stdout_offset].decode()
    b.restore("stay", ckpt)
    assert b.wait("stay", timeout=120) == 0
    assert before + b.stdout_path("stay").read_text() == lines(150) + "END\n"
