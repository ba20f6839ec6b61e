"""The typed client every command uses: MOSIX objects in, MOSIX objects out, over any store."""

from __future__ import annotations

from typing import Any

import pydantic

from mosix.api import cluster, job, node
from mosix.client import store

FIRST_PID = 1001
COMMAND_LINE_ANNOTATION = "mosix.dev/command-line"


def pid_of(obj: job.MosixJob) -> int | None:
    """The job's MOSIX id when its name is a number (as mosrun names them)."""
    return int(obj.name) if obj.name.isdigit() else None


class Client:
    """MOSIX objects over a store (Kubernetes or the local cluster)."""

    def __init__(self, backend: store.Store) -> None:
        self.store = backend

    def key(self, obj: job.MosixJob) -> str:
        """The job's name in this client's scope: "namespace/name" when it spans namespaces."""
        if getattr(self.store, "namespace", None) == "*" and obj.metadata.namespace:
            return f"{obj.metadata.namespace}/{obj.name}"
        return obj.name

    # jobs
    def jobs(self) -> list[job.MosixJob]:
        return [job.MosixJob.model_validate(b) for b in self.store.list(job.MosixJob)]

    def get_job(self, ref: str) -> job.MosixJob:
        return job.MosixJob.model_validate(self.store.get(job.MosixJob, ref))

    def submit(
        self, spec: job.MosixJobSpec, *, name: str | None = None, annotations: dict[str, str] | None = None
    ) -> job.MosixJob:
        """Creates the job; without a name it gets the next free numeric id, like a PID."""
        body: dict[str, Any] = {"metadata": {"annotations": annotations or {}}, "spec": spec.wire()}
        if name:
            body["metadata"]["name"] = name
            return job.MosixJob.model_validate(self.store.create(job.MosixJob, body))
        taken = [p for p in (pid_of(j) for j in self.jobs()) if p is not None]
        pid = max([FIRST_PID - 1, *taken]) + 1
        for _ in range(1000):
            body["metadata"]["name"] = str(pid)
            try:
                return job.MosixJob.model_validate(self.store.create(job.MosixJob, body))
            except store.Conflict:
                pid += 1
        raise store.Conflict("could not find a free job id")

    def patch_job(self, name: str, spec: dict[str, Any]) -> job.MosixJob:
        return job.MosixJob.model_validate(self.store.patch(job.MosixJob, name, {"spec": spec}))

    def patch_job_status(self, name: str, status: dict[str, Any]) -> job.MosixJob:
        return job.MosixJob.model_validate(self.store.patch(job.MosixJob, name, {"status": status}, status=True))

    def delete_job(self, name: str) -> None:
        self.store.delete(job.MosixJob, name)

    # nodes
    def nodes(self) -> list[node.MosixNode]:
        found = [node.MosixNode.model_validate(b) for b in self.store.list(node.MosixNode)]
        return sorted(found, key=lambda n: n.spec.number)

    def get_node(self, ref: str) -> node.MosixNode:
        """A node by name, number or IP address (mosctl whois accepts all three)."""
        for candidate in self.nodes():
            if ref in (candidate.name, str(candidate.spec.number), candidate.spec.address, candidate.spec.hostname):
                return candidate
        raise store.NotFound(f'no MOSIX node "{ref}" (give a node number, IP address or host name)')

    # the cluster's configuration
    def get_cluster(self) -> cluster.MosixCluster:
        """The cluster's configuration; MOSIX's defaults when none was made."""
        try:
            return cluster.MosixCluster.model_validate(self.store.get(cluster.MosixCluster, cluster.DEFAULT_NAME))
        except store.NotFound:
            return cluster.MosixCluster()
        except pydantic.ValidationError as e:
            raise store.StoreError(f"MosixCluster {cluster.DEFAULT_NAME} is malformed: {e}") from e
