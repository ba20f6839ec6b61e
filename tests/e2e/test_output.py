"""A job's output lives at its home node: foreground mosrun streams it and returns the exit code, and
nothing is lost or repeated through migrations and a freeze."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from mosix.agent import userapi
from mosix.api import job, meta
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS


def test_foreground_mosrun_streams_output_and_returns_the_exit_code(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    done = cluster.run("mosrun", "-2", "testload", "-n", "20", "-d", "0.02")
    assert done.stdout == "".join(f"{i}\n" for i in range(20))
    failed = cluster.run("mosrun", "-1", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "out\n", "err\n")


def test_foreground_mosrun_of_a_commands_file_streams_every_lines_output(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    commands = cluster.workdir / "commands"
    commands.write_text("".join(f'sh -c "echo out {i}; sleep 0.3; echo err {i} >&2"\n' for i in range(4)))
    done = cluster.run("mosrun", "-S2", str(commands))
    assert sorted(done.stdout.splitlines()) == [f"out {i}" for i in range(4)]
    assert sorted(done.stderr.splitlines()) == [f"err {i}" for i in range(4)]


def until_stopped(*program: str) -> tuple[str, ...]:
    """The program (a counter) until the file `stop` appears in the job's working directory, then "stopped": the
    job runs as long as the scenario needs, however slow the control plane."""
    return ("sh", "-c", f"{' '.join(program)} & p=$!; while [ ! -e stop ]; do sleep 0.05; done; kill $p; wait $p; "
                        "echo stopped")


def assert_whole_count(out: str) -> None:
    """0, 1, 2, ... with no line lost or repeated, then "stopped"."""
    lines = out.splitlines()
    assert len(lines) > 1 and lines[-1] == "stopped", out[-200:]
    assert lines[:-1] == [str(i) for i in range(len(lines) - 1)]


def stop_and_wait(cluster: harness.Cluster, name: str) -> None:
    (cluster.workdir / "stop").touch()
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    assert cluster.status(name).phase == job.Phase.SUCCEEDED


def test_output_through_two_migrations_and_a_freeze_is_complete(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", *until_stopped("testload", "-d", "0.03"))

    def at(node: str) -> bool:
        status = cluster.status(name)
        return (status.node, status.phase) == (node, job.Phase.RUNNING)

    cluster.wait_for("the job to run", lambda: at("node1"))
    cluster.run("migrate", name, "2")
    cluster.wait_for("the job on node2", lambda: at("node2"))
    cluster.run("migrate", name, "freeze")
    cluster.wait_for("the job frozen", lambda: cluster.status(name).phase == job.Phase.FROZEN)
    cluster.run("migrate", name, "continue")
    cluster.wait_for("the job running again", lambda: at("node2"))
    cluster.run("migrate", name, "home")
    cluster.wait_for("the job home", lambda: at("node1"))
    stop_and_wait(cluster, name)
    assert cluster.status(name).migrations == 2
    assert_whole_count(cluster.run("mosix", "logs", name).stdout)


def test_a_large_job_moves_by_post_copy_and_its_output_is_complete(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", *until_stopped("testload", "-m", "300", "-d", "0.08"))  # 300 MiB > the 256 MiB cut
    cluster.wait_for("the job to run", lambda: cluster.status(name).phase == job.Phase.RUNNING)
    cluster.run("migrate", name, "2")
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "by post-copy" in (cluster.workdir / "agent-1.log").read_text()
    stop_and_wait(cluster, name)
    assert_whole_count(cluster.run("mosix", "logs", name).stdout)


def test_post_copy_when_asked_even_for_a_small_job(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", *until_stopped("testload", "-d", "0.05"))  # a few MiB: Auto would copy it all first
    cluster.wait_for("the job to run", lambda: cluster.status(name).phase == job.Phase.RUNNING)
    cluster.run("migrate", name, "--postcopy", "2")
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "→ node2 by post-copy" in (cluster.workdir / "agent-1.log").read_text()
    cluster.run("migrate", name, "home")
    cluster.wait_for("the job home", lambda: cluster.status(name).node == "node1"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "→ node1 by stop-and-copy" in (cluster.workdir / "agent-2.log").read_text()
    stop_and_wait(cluster, name)
    assert_whole_count(cluster.run("mosix", "logs", name).stdout)


def _kubectl_apply(cluster: harness.Cluster, *docs: dict[str, Any], delete: bool = False) -> None:
    assert cluster.kubeconfig is not None
    verb = ["delete", "--ignore-not-found"] if delete else ["apply"]
    subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig, *verb, "-f", "-"], input=yaml.safe_dump_all(docs),
                   text=True, check=True, capture_output=True)


def _role(kind: str, name: str, namespace: str | None, rules: list[dict[str, Any]]) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata, "rules": rules}


def _binding(kind: str, role: dict[str, Any], user: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": role["metadata"],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"],
                        "name": role["metadata"]["name"]},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}


def test_a_user_reads_a_jobs_output_only_when_rbac_lets_them(cluster: harness.Cluster) -> None:
    """The home agent asks the API server who the user is and whether they may get mosixjobs/log: no pods/exec."""
    if cluster.kubeconfig is None:
        pytest.skip("needs a real API server with users (MOSIX_E2E_KUBECONFIG): the local cluster has none")
    token = pathlib.Path(cluster.kubeconfig).parent / "tester.token"
    if not token.is_file():
        pytest.skip(f"needs the unprivileged user's token {token} (shared/k8s/apiserver up writes it)")
    config = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    config["users"] = [{"name": "tester", "user": {"token": token.read_text().strip()}}]
    for context in config["contexts"]:
        context["context"]["user"] = "tester"
    as_tester = cluster.workdir / "tester.kubeconfig"
    as_tester.write_text(yaml.safe_dump(config))
    tester = {"MOSIX_KUBECONFIG": str(as_tester)}
    cluster.up(nodes=1)
    name = cluster.submit("-1", "sh", "-c", "echo for readers only")
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished)
    # What every mosix command needs (mosps too): see the jobs of the namespace and the nodes.
    ns = cluster.namespace
    jobs = _role("Role", "see-jobs", ns, [{"apiGroups": [meta.GROUP], "resources": ["mosixjobs"],
                                           "verbs": ["get", "list"]}])
    nodes = _role("ClusterRole", f"{ns}-see-nodes", None, [{"apiGroups": [meta.GROUP], "resources": ["mosixnodes"],
                                                            "verbs": ["get", "list"]}])
    log = _role("Role", "job-log", ns, [{"apiGroups": [meta.GROUP], "verbs": [userapi.LOG.verb],
                                         "resources": [f"{userapi.RESOURCE}/{userapi.LOG.subresource}"]}])
    seeing = [jobs, _binding("RoleBinding", jobs, "tester"), nodes, _binding("ClusterRoleBinding", nodes, "tester")]
    _kubectl_apply(cluster, *seeing)
    try:
        refused = cluster.run("mosix", "logs", name, check=False, env=tester)
        assert refused.returncode != 0 and refused.stdout == ""
        assert "'tester' may not get mosixjobs/log" in refused.stderr and "HTTP 403" in refused.stderr
        assert "user API refused GET" in (cluster.workdir / "agent-1.log").read_text()
        _kubectl_apply(cluster, log, _binding("RoleBinding", log, "tester"))
        # The agent remembers a refusal for a few seconds, as the kubelet does.
        cluster.wait_for("the RoleBinding to let tester read",
                         lambda: cluster.run("mosix", "logs", name, check=False, env=tester).returncode == 0)
        assert cluster.run("mosix", "logs", name, env=tester).stdout == "for readers only\n"
    finally:
        _kubectl_apply(cluster, *seeing[2:], delete=True)
