"""Job containers under real runc and CRIU: run, checkpoint, restore, freeze, continue, recycle, remap."""

from __future__ import annotations

import collections.abc
import json
import pathlib
import shutil
import stat
import time

import pytest

from mosix.agent import checkpoints, containers, criu, errors, images, jobs

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
CheckCounts = collections.abc.Callable[[list[str], str], None]
MakeAgent = collections.abc.Callable[..., containers.Manager]

COUNT = ("sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")


def counting(name: str) -> jobs.Job:
    return jobs.Job(name=name, args=COUNT)


@pytest.mark.root
def test_run_keeps_stdout_and_stderr_apart_and_records_the_exit_code(agent: containers.Manager) -> None:
    job = jobs.Job(name="exit3", args=("sh", "-c", "echo out; echo err >&2; exit 3"))
    agent.run(job)
    assert agent.wait("exit3", timeout=60) == 3
    assert agent.stdout_path("exit3").read_text() == "out\n"
    assert agent.stderr_path("exit3").read_text() == "err\n"
    status = agent.status("exit3")
    assert status.state == jobs.State.EXITED
    assert status.exit_code == 3


@pytest.mark.root
def test_job_has_no_capabilities_beyond_runc_defaults(agent: containers.Manager) -> None:
    agent.run(jobs.Job(name="caps", args=("sh", "-c", "grep CapEff /proc/self/status")))
    assert agent.wait("caps", timeout=60) == 0
    cap_eff = int(agent.stdout_path("caps").read_text().split()[1], 16)
    # CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10)
    assert cap_eff == (1 << 29) | (1 << 5) | (1 << 10)


@pytest.mark.root
def test_checkpoint_kill_everything_and_restore(agent: containers.Manager, wait_lines: WaitLines,
                                                check_counts: CheckCounts) -> None:
    agent.run(counting("count"))
    out = agent.stdout_path("count")
    wait_lines(out, 20)
    ckpt = agent.checkpoint("count", keep_running=True)
    at_checkpoint = checkpoints.read_meta(ckpt).stdout_offset
    wait_lines(out, len(out.read_bytes()[:at_checkpoint].splitlines()) + 10)  # it ran on past the set
    agent.kill("count")
    assert agent.status("count").state == jobs.State.EXITED
    before = len(out.read_text().splitlines())
    agent.restore("count", ckpt)
    # The tail written after the set is cut, and written again by the restored process: the
    # file then counts on with no gap or repeat, well past where the killed process stopped.
    wait_lines(out, before + 20)
    agent.kill("count")
    check_counts(out.read_text().splitlines(), "")


@pytest.mark.root
def test_freeze_then_continue(agent: containers.Manager, wait_lines: WaitLines, check_counts: CheckCounts) -> None:
    agent.run(counting("frz"))
    out = agent.stdout_path("frz")
    wait_lines(out, 10)
    frozen = agent.freeze("frz", reason="Expelled")
    status = agent.status("frz")
    assert status.state == jobs.State.FROZEN
    assert status.freeze_reason == "Expelled"
    assert checkpoints.read_meta(frozen).reason == "freeze:Expelled"
    assert not agent.runtime.list()  # the process is gone
    size = out.stat().st_size
    assert checkpoints.read_meta(frozen).stdout_offset == size
    agent.continue_("frz")
    assert agent.status("frz").state == jobs.State.RUNNING
    assert not frozen.exists()
    wait_lines(out, len(out.read_text().splitlines()) + 10)
    agent.kill("frz")
    check_counts(out.read_text().splitlines(), "")


@pytest.mark.root
def test_sets_recycle_after_max_and_are_root_only(agent: containers.Manager, tmp_path: pathlib.Path) -> None:
    base = tmp_path / "user-ckpts" / "myckpt"
    agent.run(jobs.Job(name="cyc", args=COUNT, checkpoint_base=str(base), max_sets=2))
    made = [agent.checkpoint("cyc", keep_running=True) for _ in range(3)]
    assert [p.name for p in made] == ["myckpt.1", "myckpt.2", "myckpt.1"]
    assert sorted(p.name for p in base.parent.iterdir()) == ["myckpt.1", "myckpt.2"]
    assert checkpoints.read_meta(base.with_name("myckpt.1")).serial == 3
    assert checkpoints.read_meta(base.with_name("myckpt.2")).serial == 2
    assert agent.status("cyc").checkpoints == [str(base.with_name("myckpt.2")), str(base.with_name("myckpt.1"))]
    for d in (base.parent, made[0], made[0] / "images"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (made[0] / "images").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((made[0] / "meta.json").stat().st_mode) == 0o600
    agent.kill("cyc")


@pytest.mark.root
def test_inspect_lists_the_open_files(agent: containers.Manager, wait_lines: WaitLines) -> None:
    agent.run(jobs.Job(name="insp", args=("testload", "-f", "/tmp/data")))
    wait_lines(agent.stdout_path("insp"), 5)
    ckpt = agent.checkpoint("insp", keep_running=False)
    assert agent.status("insp").state == jobs.State.STOPPED
    fds = {d.fd: d for d in criu.inspect(ckpt / checkpoints.IMAGES)}
    data = (ckpt / checkpoints.UPPER / "tmp/data").read_bytes()
    assert fds[3].path == "/tmp/data"
    assert fds[3].offset == len(data)
    assert fds[3].describe() == f"File-Descriptor #3: /tmp/data, offset={len(data)}, Write-Only"
    assert fds[1].describe() == "Standard Output(1): special file, Write-Only"
    assert fds[2].describe() == "Standard Error (2): special file, Write-Only"
    assert fds[0].describe() == "Standard Input (0): special file, Read-Write"  # /dev/null, as subprocess opens it


@pytest.mark.root
def test_restore_with_fd_remap_writes_into_the_new_file(agent: containers.Manager, wait_lines: WaitLines,
                                                        check_counts: CheckCounts) -> None:
    agent.run(jobs.Job(name="remap", args=("testload", "-f", "/tmp/data")))
    wait_lines(agent.stdout_path("remap"), 10)
    ckpt = agent.checkpoint("remap", keep_running=False)
    upper = ckpt / checkpoints.UPPER / "tmp"
    shutil.copy2(upper / "data", upper / "moved")  # the user moved the file: -O3=/tmp/moved
    old_len = len((upper / "data").read_text().splitlines())
    agent.restore("remap", ckpt, fd_remap={3: "/tmp/moved"})
    rootfs = agent.state_dir / "jobs" / "remap" / "rootfs"
    moved = wait_lines(rootfs / "tmp/moved", old_len + 10)
    agent.kill("remap")
    check_counts((rootfs / "tmp/moved").read_text().splitlines(), "x")
    assert len(moved) >= old_len + 10
    assert len((rootfs / "tmp/data").read_text().splitlines()) == old_len  # the old file got nothing


@pytest.mark.root
def test_restore_on_another_agent_from_a_set(make_agent: MakeAgent, wait_lines: WaitLines,
                                             check_counts: CheckCounts, tmp_path: pathlib.Path) -> None:
    # The second agent builds its own test image, as another node would.
    first, second = make_agent("a"), make_agent("b", images.Cache(tmp_path / "other-images"))
    first.run(counting("mover"))
    wait_lines(first.stdout_path("mover"), 10)
    ckpt = first.checkpoint("mover", keep_running=False)
    source_output = first.stdout_path("mover").read_text()
    assert len(source_output) == checkpoints.read_meta(ckpt).stdout_offset
    first.remove("mover")
    second.restore("mover", ckpt)
    wait_lines(second.stdout_path("mover"), 10)
    second.kill("mover")
    check_counts(source_output.splitlines() + second.stdout_path("mover").read_text().splitlines(), "")


@pytest.mark.root
def test_restored_process_is_reaped_with_its_exit_code(agent: containers.Manager, wait_lines: WaitLines,
                                                       check_counts: CheckCounts) -> None:
    script = "i=0; while [ $i -lt 60 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 7"
    agent.run(jobs.Job(name="ends", args=("sh", "-c", script)))
    wait_lines(agent.stdout_path("ends"), 5)
    ckpt = agent.checkpoint("ends", keep_running=False)
    agent.restore("ends", ckpt)
    assert agent.wait("ends", timeout=60) == 7
    lines = agent.stdout_path("ends").read_text().splitlines()
    check_counts(lines, "")
    assert len(lines) == 60


@pytest.mark.root
def test_restore_refuses_a_set_taken_on_another_image(agent: containers.Manager, wait_lines: WaitLines) -> None:
    agent.run(counting("img"))
    wait_lines(agent.stdout_path("img"), 3)
    ckpt = agent.checkpoint("img", keep_running=False)
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["image_digest"] = "sha256:" + "0" * 64
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(errors.CheckpointError, match="taken on image"):
        agent.restore("img", ckpt)
    assert agent.status("img").state == jobs.State.STOPPED
    assert not agent.runtime.list()


@pytest.mark.root
def test_periodic_checkpoints_recycle(agent: containers.Manager, tmp_path: pathlib.Path) -> None:
    base = tmp_path / "auto" / "ckpt"
    agent.run(jobs.Job(name="auto", args=COUNT, checkpoint_base=str(base), max_sets=2, checkpoint_every=0.3))
    deadline = time.monotonic() + 60
    while not (base.with_name("ckpt.2").exists() and checkpoints.read_meta(base.with_name("ckpt.1")).serial >= 3):
        assert time.monotonic() < deadline, f"periodic checkpoints never recycled: {list(base.parent.iterdir())}"
        time.sleep(0.1)
    agent.kill("auto")
    assert {checkpoints.read_meta(p).reason for p in checkpoints.sets_of(base)} == {"periodic"}
    assert sorted(p.name for p in base.parent.iterdir() if not p.name.startswith(".")) == ["ckpt.1", "ckpt.2"]


@pytest.mark.root
def test_memory_limit_is_set_on_the_job_cgroup(agent: containers.Manager) -> None:
    agent.run(jobs.Job(name="mem", args=("sleep", "1000"), memory_mb=64))
    limits = list(pathlib.Path("/sys/fs/cgroup/memory").glob(f"mosix/{agent.node}/mem/memory.limit_in_bytes"))
    limits += list(pathlib.Path("/sys/fs/cgroup").glob(f"mosix/{agent.node}/mem/memory.max"))  # cgroup v2
    assert limits, "no memory cgroup for the job"
    assert int(limits[0].read_text()) == 64 * 1024 * 1024
    agent.kill("mem")


@pytest.mark.root
def test_private_files_migrate_with_the_writable_layer(make_agent: MakeAgent, wait_lines: WaitLines,
                                                       check_counts: CheckCounts) -> None:
    """mosrun -X: temporary private files live in the job's writable layer and go with its sets."""
    first, second = make_agent("x1"), make_agent("x2")
    script = "i=0; while :; do echo $i >> /scratch/log; echo $i; i=$((i+1)); sleep 0.05; done"
    first.run(jobs.Job(name="priv", args=("sh", "-c", script), private_dirs=("/scratch",)))
    wait_lines(first.stdout_path("priv"), 10)
    ckpt = first.checkpoint("priv", keep_running=False)
    first.remove("priv")
    second.restore("priv", ckpt)
    log = second.state_dir / "jobs/priv/rootfs/scratch/log"
    before = len((ckpt / checkpoints.UPPER / "scratch/log").read_text().splitlines())
    wait_lines(log, before + 10)
    second.kill("priv")
    check_counts(log.read_text().splitlines(), "")


@pytest.mark.root
def test_a_shared_directory_named_as_checkpoint_base_keeps_its_mode(agent: containers.Manager,
                                                                    tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp in mosrun -C/tmp/ckpt
    agent.run(jobs.Job(name="shr", args=COUNT, checkpoint_base=str(shared / "ckpt")))
    made = agent.checkpoint("shr", keep_running=False)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
