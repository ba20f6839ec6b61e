"""kmock's Kubernetes emulator made to write like an API server, and a small test client over it.

kmock keeps objects as written; the operator relies on what a real API server adds: uid, creation
time, resourceVersion (and refusing a stale one), generateName (every Event has one), and the status
subresource (status written only through /status, ignored elsewhere).
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from mosix.api import meta

ROOT = pathlib.Path(__file__).resolve().parents[3]
JOBS = f"{meta.API_VERSION}/mosixjobs"
NODES = f"{meta.API_VERSION}/mosixnodes"
CLUSTERS = f"{meta.API_VERSION}/mosixclusters"
EVENTS = "v1/events"
PEERINGS = "kopf.dev/v1/clusterkopfpeerings"
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}


class StaleVersion(kmock.KubernetesError):
    """409: the patch names a resourceVersion that is no longer current."""


class TestFailed(kmock.KubernetesError):
    """422: a JSON patch's `test` operation does not hold."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """The emulator with an API server's bookkeeping on create and patch."""

    _version: int = attrs.field(default=0, init=False)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._on_create(request, request.data)
        elif request.resource is not None and request.action == kmock.action.UPDATE and request.name is not None:
            if isinstance(request.data, dict):
                self._on_patch(request, request.resource, request.name, request.data)
            elif isinstance(request.data, list):  # a JSON patch: Kopf's, which tests the version first
                self._on_json_patch(request, request.resource, request.name, request.data)
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and response.status == 200 and not response.prepared:
            response.set_status(201)  # as an API server says it; the official client reads only a 201's body
        return response

    def _has_status(self, request: kmock.Request) -> bool:
        res = request.resource
        return res is not None and res in self.resources and "status" in self.resources[res].subresources

    def _on_create(self, request: kmock.Request, data: dict[str, Any]) -> None:
        md = data.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{md['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace:
            md["namespace"] = request.namespace
        md.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_version())
        if self._has_status(request):
            data.pop("status", None)

    def _current_version(self, request: kmock.Request, res: kmock.resource, name: str) -> str | None:
        try:
            stored = self.objects[res, request.namespace, name]
        except KeyError:
            return None
        return None if stored.deleted else stored.get("metadata", {}).get("resourceVersion")

    def _on_json_patch(self, request: kmock.Request, res: kmock.resource, name: str, ops: list[Any]) -> None:
        current = self._current_version(request, res, name)
        for op in ops:
            if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion" and op["value"] != current:
                raise TestFailed(status=422, reason="Invalid", message="the resourceVersion test failed")
        ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": self._next_version()})

    def _on_patch(self, request: kmock.Request, res: kmock.resource, name: str, data: dict[str, Any]) -> None:
        current = self._current_version(request, res, name)
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if current is not None and wanted is not None and wanted != current:
            raise StaleVersion(status=409, reason="Conflict", message="the object has been modified")
        if self._has_status(request):
            keep = {"status"} if request.subresource == "status" else set(data) - {"status"}
            for field in set(data) - keep - {"metadata"}:
                del data[field]
            if request.subresource == "status":
                data["metadata"] = {}
        data.setdefault("metadata", {})["resourceVersion"] = self._next_version()


def declare(k8s: Emulator) -> None:
    """The resources the operator finds: mosix's CRDs as generated in crds/, and what Kopf itself needs
    (Events, namespaces and CRDs to observe, its peering)."""
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec, names = crd["spec"], crd["spec"]["names"]
        for version in spec["versions"]:
            k8s.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                kind=names["kind"], singular=names["singular"], namespaced=spec["scope"] == "Namespaced",
                shortnames=names.get("shortNames", []), categories=names.get("categories", []),
                subresources=set(version.get("subresources", {})), verbs=VERBS)
    k8s.resources[EVENTS] = kmock.ResourceInfo(kind="Event", singular="event", namespaced=True, verbs=VERBS)
    k8s.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", singular="namespace", namespaced=False,
                                                        verbs=VERBS)
    k8s.resources[PEERINGS] = kmock.ResourceInfo(kind="ClusterKopfPeering", singular="clusterkopfpeering",
                                                 namespaced=False, verbs=VERBS)
    k8s.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", singular="customresourcedefinition", namespaced=False, verbs=VERBS)


def kubeconfig(k8s: Emulator, path: pathlib.Path, token: str) -> pathlib.Path:
    """A kubeconfig naming the emulator, as a user's would name a real cluster."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(k8s.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": "default"}}],
    }))
    return path


def url(resource: str, name: str | None = None, namespace: str | None = None, status: bool = False) -> str:
    group_version, plural = resource.rsplit("/", 1)
    base = f"/apis/{group_version}" if "." in group_version else f"/api/{group_version}"
    where = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return where + (f"/{name}" if name else "") + ("/status" if status else "")


class Cluster:
    """What a user or an agent does to the API server, and what the tests read back."""

    def __init__(self, k8s: Emulator) -> None:
        self.k8s = k8s

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.k8s.request(method, path, json=body) as response:
            data: dict[str, Any] = await response.json()
            assert response.status < 300, data
            return data

    async def create(self, resource: str, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Creates the object, then writes its status through /status, like a client and an agent."""
        status = body.pop("status", None)
        kind = self.k8s.resources[resource].kind
        body = {"apiVersion": resource.rsplit("/", 1)[0], "kind": kind, **body}
        made = await self._send("POST", url(resource, namespace=namespace), body)
        if status is not None:
            made = await self.patch(resource, made["metadata"]["name"], {"status": status}, namespace, status=True)
        return made

    async def patch(self, resource: str, name: str, patch: dict[str, Any], namespace: str | None = None,
                    *, status: bool = False) -> dict[str, Any]:
        return await self._send("PATCH", url(resource, name, namespace, status), patch)

    async def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        await self._send("DELETE", url(resource, name, namespace))

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as stored now; None if it never was or is gone."""
        key = (kmock.resource(resource), namespace, name)  # by string, `in` misses it
        if key not in self.k8s.objects or self.k8s.objects[key].deleted:
            return None
        return dict(self.k8s.objects[key].raw)

    def events(self, reason: str | None = None, about: str | None = None) -> list[dict[str, Any]]:
        """Events posted, optionally only those with this reason, or about the object with this name."""
        found = [dict(o.raw) for (res, _, _), o in self.k8s.objects.items() if res == EVENTS and not o.deleted]
        return [e for e in found
                if (reason is None or e["reason"] == reason)
                and (about is None or e["involvedObject"].get("name") == about)]

    async def until(self, check: Callable[[], Any], timeout: float = 300) -> Any:
        """Waits until check() is truthy and returns it (loop time: fast under looptime)."""
        async with asyncio.timeout(timeout):
            while not (result := check()):
                await asyncio.sleep(0.1)
            return result
