"""A gang's processes move one at a time, with real runc and CRIU: two node agents (127.0.0.2 and 127.0.0.3,
mutual TLS, their reconcile loops and migrators as the agent's entry script builds them) over one local store,
with the control round between their passes (load balancing out of reach: only the tests' requests move
processes). `migrate {id}.1 {node}` moves process 1 alone; its sibling stays where it is, and the home keeps
each process's output whole and in order."""

from __future__ import annotations

import collections.abc
import dataclasses
import pathlib

import pytest

from mosix.agent import __main__ as agent_main
from mosix.agent import daemon, gangs, homeio, metrics, nodestatus
from mosix.api import cluster as mcluster
from mosix.api import job, meta
from mosix.cli import migrate
from mosix.client import client, local
from tests.integration.agent import test_procfiles
from tests.integration.agent.test_procfiles import Peer, loop, peers  # noqa: F401  (the fixtures)

LINES = 120
# Count to LINES, one line every 0.1 s, each line naming the process: "1 0", "1 1", ...
COUNT = f'i=0; while [ $i -lt {LINES} ]; do echo "$MOSIX_PROCESS $i"; i=$((i+1)); sleep 0.1; done'


@dataclasses.dataclass
class Cluster(test_procfiles.Cluster):
    home: homeio.HomeOutput = dataclasses.field(kw_only=True)  # what the jobs' home node keeps


@pytest.fixture
def cluster(peers: list[Peer], loop: agent_main.Loop,  # noqa: F811
            tmp_path: pathlib.Path) -> collections.abc.Iterator[Cluster]:
    api = client.Client(local.LocalStore(tmp_path / "store"))
    api.store.init()  # type: ignore[attr-defined]
    quiet = mcluster.MosixCluster(metadata=meta.ObjectMeta(name=mcluster.DEFAULT_NAME))
    quiet.spec.balancing.min_gain = 100.0  # the schema's largest: only the requests here move processes
    api.store.create(mcluster.MosixCluster, quiet.wire())
    home = homeio.HomeOutput(tmp_path / "home")
    agents = []
    for number, p in zip((2, 3), peers, strict=True):
        me = daemon.Identity(name=p.manager.node, number=number, address=p.address, port=p.port, metrics_port=0)
        migrator = agent_main.migrator(api, p.manager, loop, p.client, me.name, postcopy_above_mb=1 << 20)
        agent = daemon.Agent(api, p.manager, me, nodestatus.Sampler(cpus=1, speed=10000), migrator,
                             home=home, remote_sink=lambda _: home.append,
                             shared_checkpoints=True)  # one machine: every node reads the sets
        agent.register()
        agents.append(agent)
    yield Cluster(api, agents, home=home)
    for j in api.jobs():
        metrics.forget_job(api.store.namespace, j.name)


def _counted(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _request(api: client.Client, pid: str, action: str) -> None:
    """What `migrate {pid} {action}` records."""
    target, index = migrate.resolve(api, pid)
    migrate.apply(api, target, migrate.parse([pid, action]), index)


@pytest.mark.root
def test_migrate_one_process_of_a_gang_and_both_outputs_stay_whole_and_in_order(cluster: Cluster) -> None:
    api = cluster.api
    spec = job.MosixJobSpec(command=["sh", "-c", COUNT], parallel=2, queue=job.Queue())
    name = api.submit(spec, name="gang-of-two").name
    cluster.until("both processes to run", lambda: [p.phase for p in api.get_job(name).status.processes.values()]
                  == [job.Phase.RUNNING] * 2)
    before = api.get_job(name).status.processes
    there = next(a for a in cluster.agents if a.me.name != before["1"].node)  # the node process 1 is not on
    stays = before["0"].node

    _request(api, f"{name}.1", str(there.me.number))
    cluster.until("process 1 to run on the other node", lambda: (
        (p := api.get_job(name).status.processes["1"]).node == there.me.name and p.phase == job.Phase.RUNNING))

    moved = api.get_job(name).status
    assert (moved.processes["1"].migrations, moved.processes["1"].target_node) == (1, None)
    assert moved.processes["1"].last_freeze_ms is not None and moved.processes["1"].last_migration_time
    assert moved.processes["1"].observed_migration_serial == 1
    assert (moved.processes["0"].node, moved.processes["0"].migrations) == (stays, 0)  # its sibling stayed
    container = gangs.container(daemon.container_name(name), "1")
    assert container in there.manager.names()  # the same container, restored there

    api.patch_job_status(name, {"processes": {"0": {"targetNode": "99"}}})  # as a request naming no node leaves it
    cluster.until("the bad target dropped", lambda: api.get_job(name).status.processes["0"].target_node is None)
    assert 'not migrated: no MOSIX node "99"' in (api.get_job(name).status.processes["0"].message or "")
    assert api.get_job(name).status.processes["0"].node == stays

    _request(api, f"{name}.0", "freeze")  # one process frozen to disk, the other runs on
    cluster.until("process 0 frozen", lambda: api.get_job(name).status.processes["0"].phase == job.Phase.FROZEN)
    assert api.get_job(name).status.processes["1"].phase == job.Phase.RUNNING
    _request(api, f"{name}.0", "continue")
    cluster.until("process 0 running again",
                  lambda: api.get_job(name).status.processes["0"].phase == job.Phase.RUNNING)

    cluster.until("the gang to finish", lambda: api.get_job(name).status.phase.finished)
    done = api.get_job(name).status
    assert (done.phase, done.exit_code) == (job.Phase.SUCCEEDED, 0)
    assert (done.processes["0"].migrations, done.processes["1"].migrations) == (0, 1)
    for i in ("0", "1"):
        lines = _counted(cluster.home.path(f"{name}_{i}", "stdout"))
        assert lines == [f"{i} {n}" for n in range(LINES)], f"process {i}: gap, duplicate or disorder"


@pytest.mark.root
def test_a_process_its_agent_lost_resumes_from_its_own_checkpoint(cluster: Cluster) -> None:
    """A process the agent no longer holds (as after an agent restart) restores from its newest set: its
    sibling runs on untouched, and its output at home is rewound to the set and continues, whole."""
    api = cluster.api
    spec = job.MosixJobSpec(command=["sh", "-c", COUNT], parallel=2, queue=job.Queue())
    name = api.submit(spec, name="gang-lost").name
    cluster.until("both processes to run", lambda: [p.phase for p in api.get_job(name).status.processes.values()]
                  == [job.Phase.RUNNING] * 2)
    _request(api, name, "checkpoint")
    cluster.until("a set of each process", lambda: api.get_job(name).status.observed_checkpoint_serial == 1)
    procs = api.get_job(name).status.processes
    assert all(len(p.checkpoints) == 1 for p in procs.values())
    assert procs["0"].checkpoints[0].name != procs["1"].checkpoints[0].name
    holder = next(a for a in cluster.agents if a.me.name == procs["0"].node)
    container = gangs.container(daemon.container_name(name), "0")
    holder.manager.remove(container)  # lost, as to an agent restart
    seen: list[str] = []

    def restored() -> bool:
        p = api.get_job(name).status.processes["0"]
        seen.append(f"{p.phase.value} {p.restore_from} {p.message}")
        return p.phase == job.Phase.RUNNING and container in holder.manager.names() and p.restore_from is None

    cluster.until("process 0 restored", restored)
    assert any(f"Pending {procs['0'].checkpoints[0].name} " in s for s in seen), seen  # from its own set
    assert api.get_job(name).status.processes["1"].phase == job.Phase.RUNNING
    cluster.until("the gang to finish", lambda: api.get_job(name).status.phase.finished)
    assert (api.get_job(name).status.phase, api.get_job(name).status.exit_code) == (job.Phase.SUCCEEDED, 0)
    for i in ("0", "1"):
        lines = _counted(cluster.home.path(f"{name}_{i}", "stdout"))
        assert lines == [f"{i} {n}" for n in range(LINES)], f"process {i}: gap, duplicate or disorder"


@pytest.mark.root
def test_a_process_lost_with_its_node_resumes_from_its_own_checkpoint_on_the_other(cluster: Cluster) -> None:
    """Its node dies after a checkpoint: the process restarts from its own set on the other node, its sibling
    (on the home node) runs on, and home keeps each output whole: the set was listed only once home had
    the output before it, so nothing the dead node held is missing."""
    api = cluster.api
    spec = job.MosixJobSpec(command=["sh", "-c", COUNT], parallel=2, queue=job.Queue())
    name = api.submit(spec, name="gang-node-died").name
    cluster.until("both processes to run", lambda: [p.phase for p in api.get_job(name).status.processes.values()]
                  == [job.Phase.RUNNING] * 2)
    home = api.get_job(name).status.home_node
    index = next(i for i, p in api.get_job(name).status.processes.items() if p.node != home)
    _request(api, name, "checkpoint")
    cluster.until(f"a set of process {index}", lambda: bool(api.get_job(name).status.processes[index].checkpoints))
    dying = next(a for a in cluster.agents if a.me.name != home)
    cluster.kill(dying)  # at once: no pass of its agent sends anything after its set is listed
    cluster.until(f"process {index} to run on the home node", lambda: (
        (p := api.get_job(name).status.processes[index]).node == home and p.phase == job.Phase.RUNNING))
    survivor = next(a for a in cluster.agents if a.me.name == home)
    assert gangs.container(daemon.container_name(name), index) in survivor.manager.names()
    cluster.until("the gang to finish", lambda: api.get_job(name).status.phase.finished)
    done = api.get_job(name).status
    assert (done.phase, done.exit_code) == (job.Phase.SUCCEEDED, 0)
    for i in ("0", "1"):
        lines = _counted(cluster.home.path(f"{name}_{i}", "stdout"))
        assert lines == [f"{i} {n}" for n in range(LINES)], f"process {i}: gap, duplicate or disorder"
