"""/run/mosix inside real job containers (runc, CRIU, two agents on 127.0.0.2 and 127.0.0.3 over mutual TLS).

The jobs are busybox `sh` loops that print what they read in /run/mosix. A test makes a job write a file
by dropping a `step` script into the job's /run/mosix directory on the host (the container sees it
through the bind mount); the job runs it and deletes it, so every write below is the job's own.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import pathlib
import ssl
import time

import pytest

from mosix.agent import __main__ as agent_main
from mosix.agent import containers, daemon, homeio, jobs, metrics, migration, nodestatus, procfiles, server, tls
from mosix.api import job, node
from mosix.client import client, local
from mosix.controller import round as control
from tests.ports import free_port

MakeAgent = collections.abc.Callable[..., containers.Manager]
WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]

# Print where the job is and how often it moved, one "whereami nmigs" line a round; run a dropped step.
REPORT = (
    "sh",
    "-c",
    "while :; do echo $(cat /run/mosix/whereami) $(cat /run/mosix/nmigs);"
    " if [ -e /run/mosix/step ]; then sh /run/mosix/step; rm -f /run/mosix/step; fi; sleep 0.1; done",
)



def step(files: procfiles.ProcDir, script: str) -> None:
    """Have the job run `script` (it sees the file at /run/mosix/step)."""
    tmp = files.path / ".step.new"
    tmp.write_text(script + "\n")
    tmp.replace(files.path / "step")


def wait_for(what: str, check: collections.abc.Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclasses.dataclass
class Peer:
    manager: containers.Manager
    url: str
    client: ssl.SSLContext
    address: str
    port: int


@pytest.fixture
def loop() -> collections.abc.Iterator[agent_main.Loop]:
    """The asyncio thread the agents' API servers and migrations run in (as in the agent's entry script)."""
    running = agent_main.Loop()
    yield running
    running.stop()


@pytest.fixture
def peers(make_agent: MakeAgent, loop: agent_main.Loop, tmp_path: pathlib.Path) -> collections.abc.Iterator[list[Peer]]:
    """Agents on 127.0.0.2 and 127.0.0.3, each serving its API with a certificate from one CA."""
    ca = tls.make_ca(tmp_path / "ca")
    out: list[Peer] = []
    runners = []
    for n in ("2", "3"):
        address = f"127.0.0.{n}"
        ident = tls.issue(ca, tmp_path / f"tls{n}", f"node{n}", (address,))
        manager = make_agent(f"pf{n}")
        port = free_port(address)
        ctx = tls.client_context(ident)
        runners.append(loop.run(server.serve(manager, address, port, tls.server_context(ident), ctx)))
        out.append(Peer(manager, f"https://{address}:{port}", ctx, address, port))
    yield out
    for r in runners:
        loop.run(r.cleanup(), timeout=10)


def reports(path: pathlib.Path) -> list[tuple[str, str]]:
    return [(w[0], w[1]) for w in (line.split() for line in path.read_text().splitlines()) if len(w) == 2]


@pytest.mark.root
def test_whereami_names_the_new_node_after_a_migration(
    peers: list[Peer], loop: agent_main.Loop, wait_lines: WaitLines
) -> None:
    a, b = peers
    a.manager.run(jobs.Job(name="where", args=REPORT))
    wait_lines(a.manager.stdout_path("where"), 5)
    assert {w for w, _ in reports(a.manager.stdout_path("where"))} == {a.manager.node}
    loop.run(migration.migrate(a.manager, "where", b.url, a.client))
    wait_lines(b.manager.stdout_path("where"), 5)
    assert {w for w, _ in reports(b.manager.stdout_path("where"))} == {b.manager.node}
    assert b.manager.procdir("where").read(procfiles.WHEREAMI) == b.manager.node


@pytest.mark.root
def test_a_job_that_wrote_1_to_lock_is_not_migrated(
    peers: list[Peer], loop: agent_main.Loop, wait_lines: WaitLines
) -> None:
    a, b = peers
    a.manager.run(jobs.Job(name="pinned", args=REPORT))
    wait_lines(a.manager.stdout_path("pinned"), 2)
    files = a.manager.procdir("pinned")
    assert not files.locked()
    step(files, "echo 1 > /run/mosix/lock")
    wait_for("the job to write lock", files.locked)
    with pytest.raises(migration.MigrationFailed, match=r"locked to .*/run/mosix/lock"):
        loop.run(migration.migrate(a.manager, "pinned", b.url, a.client))
    assert a.manager.status("pinned").state == jobs.State.RUNNING
    assert "pinned" not in b.manager.names()
    lines = len(a.manager.stdout_path("pinned").read_text().splitlines())
    wait_lines(a.manager.stdout_path("pinned"), lines + 3)  # it runs on, untouched
    step(files, "echo 0 > /run/mosix/lock")
    wait_for("the job to unlock", lambda: not files.locked())
    loop.run(migration.migrate(a.manager, "pinned", b.url, a.client))
    assert b.manager.status("pinned").state == jobs.State.RUNNING


@pytest.mark.root
def test_the_files_survive_a_checkpoint_and_a_restore_elsewhere(
    make_agent: MakeAgent, wait_lines: WaitLines, tmp_path: pathlib.Path
) -> None:
    a, b = make_agent("ck1"), make_agent("ck2")
    a.run(jobs.Job(name="ck", args=REPORT))
    wait_lines(a.stdout_path("ck"), 3)
    checkpoint = a.checkpoint("ck", keep_running=False, base=tmp_path / "sets" / "ck")
    b.restore("ck", checkpoint)
    wait_lines(b.stdout_path("ck"), 3)
    assert {w for w, _ in reports(b.stdout_path("ck"))} == {b.node}
    assert sorted(p.name for p in b.procdir("ck").path.iterdir()) == sorted(procfiles.PUBLISHED + procfiles.REQUESTS)
    assert stat_mode(b.procdir("ck").path.parent) == 0o700  # the agent's job directory stays root-only


def stat_mode(path: pathlib.Path) -> int:
    return path.stat().st_mode & 0o777


# --- the agents' reconcile loops over one store, with the control round between them -------------------


@dataclasses.dataclass
class Cluster:
    api: client.Client
    agents: list[daemon.Agent]
    dead: set[str] = dataclasses.field(default_factory=set)  # nodes whose agents no longer run

    def round(self) -> None:
        """What the agents and the control plane do in one pass, in the order they may happen."""
        alive = [a for a in self.agents if a.me.name not in self.dead]
        for agent in alive:
            agent.report()
        control.run_round(self.api)
        for agent in alive:
            agent.reconcile()

    def kill(self, agent: daemon.Agent) -> None:
        """The node dies: its agent stops (its last report long past); its containers are beyond reach."""
        self.dead.add(agent.me.name)
        long_ago = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).isoformat()
        self.api.store.patch(node.MosixNode, agent.me.name, {"status": {"heartbeat": long_ago}}, status=True)

    def until(self, what: str, check: collections.abc.Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.round()
            if check():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.1)


@pytest.fixture
def cluster(peers: list[Peer], loop: agent_main.Loop, tmp_path: pathlib.Path) -> collections.abc.Iterator[Cluster]:
    """Two node agents (their reconcile loops and migrators, as the agent's entry script builds them) over a
    local store; the test drives their passes and the control rounds."""
    api = client.Client(local.LocalStore(tmp_path / "store"))
    api.store.init()  # type: ignore[attr-defined]
    agents = []
    for number, p in zip((2, 3), peers, strict=True):
        me = daemon.Identity(name=p.manager.node, number=number, address=p.address, port=p.port, metrics_port=0)
        migrate = agent_main.migrator(api, p.manager, loop, p.client, me.name, postcopy_above_mb=1 << 20)
        agent = daemon.Agent(
            api,
            p.manager,
            me,
            nodestatus.Sampler(cpus=1, speed=10000),
            migrate,
            home=homeio.HomeOutput(p.manager.state_dir / "home"),
        )
        agent.register()
        agents.append(agent)
    yield Cluster(api, agents)
    for j in api.jobs():  # the per-job series the agents' reports left in this process's metrics
        metrics.forget_job(api.store.namespace, j.name)


@pytest.mark.root
def test_writes_become_the_requests_the_commands_make(cluster: Cluster) -> None:
    api, (a, b) = cluster.api, cluster.agents
    # Named apart from mosrun's numeric ids: the agents publish per-job metrics in this process's registry.
    submitted = api.submit(
        job.MosixJobSpec(command=list(REPORT), placement=job.Placement.NODE, node="2"), name="self-steering"
    )
    key = submitted.name
    cluster.until(
        "the job to run on node 2",
        lambda: (
            api.get_job(key).status.node == a.me.name
            and a.manager.procdir(key).path.exists()
            and bool(a.manager.names())
        ),
    )
    files = a.manager.procdir(key)
    cluster.until("the first publish", lambda: files.read(procfiles.NMIGS) == "0")

    # needmem: the job's memory need as placement sees it (spec.memoryMb), and what the job reads back.
    step(files, "echo 300 > /run/mosix/needmem")
    cluster.until("memoryMb 300", lambda: api.get_job(key).spec.memory_mb == 300)
    assert files.read(procfiles.NEEDMEM) == "300"

    # A node number to migrate: the same spec.migration as `migrate {id} 3`, carried out by the agents.
    step(files, "echo 3 > /run/mosix/migrate")
    cluster.until(
        "the job to run on node 3",
        lambda: api.get_job(key).status.node == b.me.name and api.get_job(key).status.phase == job.Phase.RUNNING,
    )
    moved = api.get_job(key)
    assert moved.spec.migration is not None and moved.spec.migration.to == b.me.name
    assert moved.status.migrations == 1
    there = b.manager.procdir(key)
    cluster.until("nmigs 1 on node 3", lambda: there.read(procfiles.NMIGS) == "1")
    before = len(b.manager.stdout_path(key).read_text().splitlines())
    cluster.until(
        "the job to report from node 3", lambda: (b.me.name, "1") in reports(b.manager.stdout_path(key))[before:]
    )
    assert there.read(procfiles.NEEDMEM) == "300"

    # Bad writes change nothing and say why in the job's message; the agent carries on.
    step(there, "echo lots > /run/mosix/needmem; echo 99 > /run/mosix/migrate")
    cluster.until("the refusals", lambda: "needmem" in (api.get_job(key).status.message or ""))
    message = api.get_job(key).status.message or ""
    assert "not 'lots'" in message and 'no MOSIX node "99"' in message
    assert api.get_job(key).spec.memory_mb == 300
    assert api.get_job(key).spec.migration == moved.spec.migration
    cluster.until("needmem shown again", lambda: there.read(procfiles.NEEDMEM) == "300")

    # lock 1 pins the job (spec.locked, as mosrun -L): its own move request is then refused.
    step(there, "echo 1 > /run/mosix/lock; echo home > /run/mosix/migrate")
    cluster.until("locked", lambda: api.get_job(key).spec.locked)
    cluster.until("the refused move", lambda: "locked to its node" in (api.get_job(key).status.message or ""))
    assert api.get_job(key).spec.migration == moved.spec.migration
    assert api.get_job(key).status.node == b.me.name

    # checkpoint 1: `migrate {id} checkpoint`; clear: the statistics start afresh.
    step(there, "echo 1 > /run/mosix/checkpoint; echo 1 > /run/mosix/clear")
    cluster.until("a checkpoint", lambda: len(api.get_job(key).status.checkpoints) == 1)
    assert api.get_job(key).status.observed_checkpoint_serial == 1
    assert b._cpu_base.get(key) is not None
    assert b.manager.status(key).state == jobs.State.RUNNING
