"""The /run/mosix files on disk (procfiles) and the requests a job's writes make (selfcontrol), no containers."""

from __future__ import annotations

import os
import pathlib

import pytest

from mosix.agent import procfiles, selfcontrol
from mosix.api import job, meta, node
from mosix.client import client, local


@pytest.fixture
def files(tmp_path: pathlib.Path) -> procfiles.ProcDir:
    d = procfiles.ProcDir(tmp_path / "job" / "mosix")
    d.create(whereami="node1")
    return d


def write(files: procfiles.ProcDir, name: str, text: str) -> None:
    """What `echo text > /run/mosix/name` does: truncate and write the same file."""
    with (files.path / name).open("w") as f:
        f.write(text + "\n")


def test_create_makes_every_file_with_defaults(files: procfiles.ProcDir) -> None:
    assert sorted(p.name for p in files.path.iterdir()) == sorted(procfiles.PUBLISHED + procfiles.REQUESTS)
    assert [files.read(n) for n in procfiles.PUBLISHED] == ["node1", "0", "0", "0"]
    assert all((files.path / n).read_text() == "" for n in procfiles.REQUESTS)
    assert (files.path / procfiles.WHEREAMI).stat().st_mode & 0o777 == 0o644
    assert (files.path / procfiles.LOCK).stat().st_mode & 0o777 == 0o666
    assert files.take() == []


def test_publish_rewrites_only_what_changed(files: procfiles.ProcDir) -> None:
    before = (files.path / procfiles.WHEREAMI).stat().st_ino
    files.publish(procfiles.View(whereami="node1", nmigs=2, locked=True, needmem=300))
    assert (files.path / procfiles.WHEREAMI).stat().st_ino == before
    assert [files.read(n) for n in procfiles.PUBLISHED] == ["node1", "2", "1", "300"]
    assert files.locked()
    assert files.take() == []  # the agent's own values are not the job's writes


def test_writes_are_taken_once_in_order(files: procfiles.ProcDir) -> None:
    write(files, procfiles.MIGRATE, "3")
    write(files, procfiles.LOCK, "1")
    write(files, procfiles.NEEDMEM, " 512 ")
    write(files, procfiles.CLEAR, "1")
    assert files.take() == [
        procfiles.Write("lock", "1"),
        procfiles.Write("needmem", "512"),
        procfiles.Write("migrate", "3"),
        procfiles.Write("clear", "1"),
    ]
    assert files.take() == []
    assert (files.path / procfiles.MIGRATE).read_text() == ""
    assert files.locked()  # what the job wrote holds until the agent publishes again


def test_a_refused_write_is_replaced_by_the_agents_value(files: procfiles.ProcDir) -> None:
    write(files, procfiles.LOCK, "maybe")
    assert files.take() == [procfiles.Write("lock", "maybe")]
    files.publish(procfiles.View(whereami="node1"))
    assert files.read(procfiles.LOCK) == "0"
    assert files.take() == []


def test_a_restart_here_keeps_the_values_and_names_the_node(files: procfiles.ProcDir) -> None:
    files.publish(procfiles.View(whereami="node1", nmigs=1, locked=True, needmem=64))
    again = procfiles.ProcDir(files.path)  # a restarted agent, or a restore on the same node
    again.create(whereami="node1")
    assert [again.read(n) for n in procfiles.PUBLISHED] == ["node1", "1", "1", "64"]
    assert again.take() == []


# --- selfcontrol ------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: pathlib.Path) -> client.Client:
    store = local.LocalStore(tmp_path / "store")
    store.init()
    for n in (1, 2):
        body = node.MosixNode(
            metadata=meta.ObjectMeta(name=f"node{n}"),
            spec=node.MosixNodeSpec.model_validate({"number": n, "address": f"127.0.0.{n}"}),
        )
        store.create(node.MosixNode, body.wire())
    return client.Client(store)


def a_job(api: client.Client, **spec: object) -> job.MosixJob:
    return api.submit(job.MosixJobSpec.model_validate({"command": ["sh"], **spec}))


def writes(*pairs: tuple[str, str]) -> list[procfiles.Write]:
    return [procfiles.Write(f, v) for f, v in pairs]


def test_writes_make_the_commands_requests(api: client.Client) -> None:
    j = a_job(api, memoryMb=100)
    out = selfcontrol.outcome(
        api, j, writes(("needmem", "300"), ("migrate", "127.0.0.2"), ("checkpoint", "1"), ("clear", "1"))
    )
    assert out.refused == []
    assert out.spec == {
        "memoryMb": 300,
        "migration": {"to": "node2", "serial": 1},
        "checkpointRequest": {"after": "Continue", "serial": 1},
    }
    assert out.clear and out.needmem == 300 and out.locked is None
    api.patch_job(j.name, out.spec)  # the store's schema takes them as they are
    moved = api.get_job(j.name)
    again = selfcontrol.outcome(api, moved, writes(("migrate", "home"), ("needmem", "0"), ("checkpoint", "1")))
    assert again.spec == {
        "migration": {"to": "home", "serial": 2},
        "memoryMb": None,
        "checkpointRequest": {"after": "Continue", "serial": 2},
    }
    assert again.needmem == 0


def test_a_locked_job_is_not_moved(api: client.Client) -> None:
    out = selfcontrol.outcome(api, a_job(api), writes(("lock", "1"), ("migrate", "2")))
    assert out.spec == {"locked": True}
    assert out.refused == [
        "/run/mosix/migrate: the job is locked to its node (write 0 to /run/mosix/lock first): not moving to '2'"
    ]
    unlocked = selfcontrol.outcome(api, a_job(api, locked=True), writes(("lock", "0"), ("migrate", "node2")))
    assert unlocked.spec == {"locked": False, "migration": {"to": "node2", "serial": 1}}
    assert unlocked.locked is False


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        (("lock", "yes"), "write 1 to lock the job to its node or 0 to unlock it, not 'yes'"),
        (("needmem", "lots"), "write the memory the job needs in MB (0 to 16777216), not 'lots'"),
        (("needmem", "-5"), "not '-5'"),
        (("needmem", "99999999"), "not '99999999'"),
        (("migrate", "9"), 'no MOSIX node "9"'),
        (("migrate", "no/such"), "write a node number, IP address, host name or home, not 'no/such'"),
        (("migrate", ""), "not ''"),
        (("checkpoint", "now"), "write 1 to checkpoint the job, not 'now'"),
    ],
)
def test_bad_writes_change_nothing_and_say_why(api: client.Client, written: tuple[str, str], reason: str) -> None:
    out = selfcontrol.outcome(api, a_job(api), writes(written))
    assert out.spec == {} and not out.clear
    assert len(out.refused) == 1 and out.refused[0].startswith(f"/run/mosix/{written[0]}: ")
    assert reason in out.refused[0]


def test_a_native_batch_job_does_not_migrate(api: client.Client) -> None:
    out = selfcontrol.outcome(api, a_job(api, batch="Native"), writes(("migrate", "2")))
    assert out.spec == {} and "native Linux batch job" in out.refused[0]


def test_the_agent_follows_no_link_and_waits_on_no_fifo_the_job_leaves(
    files: procfiles.ProcDir, tmp_path: pathlib.Path
) -> None:
    """The directory is the job's to write: what it plants there must not lead the agent to host files."""
    secret = tmp_path / "host-secret"
    secret.write_text("root:hash\n")
    (files.path / procfiles.LOCK).unlink()
    (files.path / procfiles.LOCK).symlink_to(secret)
    (files.path / procfiles.MIGRATE).unlink()
    (files.path / procfiles.MIGRATE).symlink_to(secret)
    (files.path / ".needmem.new").symlink_to(secret)  # the agent's temporary name for needmem
    (files.path / procfiles.NEEDMEM).unlink()
    os.mkfifo(files.path / procfiles.NEEDMEM)
    taken = files.take()
    assert taken == [procfiles.Write("lock", ""), procfiles.Write("needmem", ""), procfiles.Write("migrate", "")]
    assert not files.locked()
    files.publish(procfiles.View(whereami="node1", locked=True, needmem=64))
    assert secret.read_text() == "root:hash\n"
    assert [files.read(n) for n in procfiles.PUBLISHED] == ["node1", "0", "1", "64"]
    assert not any(p.is_symlink() for p in files.path.iterdir())


def test_whereami_is_put_right_if_the_job_writes_it(files: procfiles.ProcDir) -> None:
    write(files, procfiles.WHEREAMI, "elsewhere")
    files.publish(procfiles.View(whereami="node1"))
    assert files.read(procfiles.WHEREAMI) == "node1"
