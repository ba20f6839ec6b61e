"""The store interface: Kubernetes-shaped objects as dicts, kept by an API server or by SQLite."""

from __future__ import annotations

from typing import Any, Protocol

from mosix.api import cluster, job, node

Body = dict[str, Any]
Resource = type[job.MosixJob] | type[node.MosixNode] | type[cluster.MosixCluster]


class StoreError(Exception):
    """The store refused or failed; the message is for the user."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """Already exists, or changed since it was read."""


class Invalid(StoreError):
    """The object breaks the CRD schema; the message names the field."""


class Store(Protocol):
    """What every backend offers. Patches are JSON merge patches; status goes through its subresource."""

    namespace: str
    description: str

    def create(self, resource: Resource, body: Body) -> Body: ...

    def get(self, resource: Resource, name: str) -> Body: ...

    def list(self, resource: Resource) -> list[Body]: ...

    def patch(self, resource: Resource, name: str, patch: Body, *, status: bool = False) -> Body: ...

    def delete(self, resource: Resource, name: str) -> None: ...


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: what `kubectl patch --type merge` does."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
