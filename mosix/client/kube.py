"""The Kubernetes store: MOSIX objects as custom resources, through the official client."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mosix.api import meta
from mosix.client import store

ALL_NAMESPACES = "*"


def _error(e: k8s.ApiException) -> store.StoreError:
    try:
        message = str(json.loads(e.body or "{}").get("message") or e.reason)
    except ValueError:
        message = str(e.reason)
    kind: type[store.StoreError] = {404: store.NotFound, 409: store.Conflict, 422: store.Invalid}.get(
        int(e.status or 0), store.StoreError
    )
    return kind(message)


def connect(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """A client for the kubeconfig (or context) given; else in-cluster; else the default kubeconfig."""
    made: k8s.ApiClient
    if kubeconfig or context:
        made = k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
        return made
    try:
        k8s_config.load_incluster_config()
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        made = k8s_config.new_client_from_config()
        return made


class KubeStore:
    """Custom objects in one namespace of a cluster, or in all of them.

    With namespace "*" (the operator's and the agents' view) jobs are listed across namespaces
    and named "namespace/name", so one cluster-wide queue holds them all.
    """

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
                 api_client: k8s.ApiClient | None = None) -> None:
        client = api_client or connect(kubeconfig, context)
        self.api = k8s.CustomObjectsApi(client)
        if namespace is None:
            try:
                _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                namespace = active.get("context", {}).get("namespace") or "default"
            except (k8s_config.ConfigException, TypeError):
                namespace = "default"
        self.namespace = namespace
        self.description = f"Kubernetes at {client.configuration.host}, namespace {namespace}"

    def _call(self, resource: store.Resource, verb: str, *args: Any, name: str | None = None) -> Any:
        namespace = self.namespace
        if resource.NAMESPACED and name is not None and "/" in name:
            namespace, name = name.split("/", 1)
        namespaced = resource.NAMESPACED and namespace != ALL_NAMESPACES
        method = getattr(self.api, verb.format(scope="namespaced" if namespaced else "cluster"))
        where = (meta.GROUP, meta.VERSION, namespace, resource.PLURAL) if namespaced \
            else (meta.GROUP, meta.VERSION, resource.PLURAL)
        named = (name,) if name is not None else ()
        try:
            return method(*where, *named, *args)
        except k8s.ApiException as e:
            raise _error(e) from e

    def _key(self, body: dict[str, Any]) -> str:
        name = str(body["metadata"]["name"])
        if self.namespace == ALL_NAMESPACES and body["metadata"].get("namespace"):
            return f"{body['metadata']['namespace']}/{name}"
        return name

    def create(self, resource: store.Resource, body: store.Body) -> store.Body:
        body = {**body, "apiVersion": meta.API_VERSION, "kind": resource.KIND}
        body.pop("status", None)
        if self.namespace == ALL_NAMESPACES and resource.NAMESPACED:
            raise store.StoreError("name a namespace to create a job in (--namespace)")
        return dict(self._call(resource, "create_{scope}_custom_object", body))

    def get(self, resource: store.Resource, name: str) -> store.Body:
        return dict(self._call(resource, "get_{scope}_custom_object", name=name))

    def list(self, resource: store.Resource) -> list[store.Body]:
        items = self._call(resource, "list_{scope}_custom_object")["items"]
        return sorted((dict(i) for i in items), key=self._key)

    def patch(self, resource: store.Resource, name: str, patch: store.Body, *, status: bool = False) -> store.Body:
        verb = "patch_{scope}_custom_object_status" if status else "patch_{scope}_custom_object"
        return dict(self._call(resource, verb, patch, name=name))

    def delete(self, resource: store.Resource, name: str) -> None:
        self._call(resource, "delete_{scope}_custom_object", name=name)
