"""The Kubernetes store: MOSIX objects as custom resources, through the official client."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from mosix.api import meta
from mosix.client import store


def _error(e: k8s.ApiException) -> store.StoreError:
    try:
        message = str(json.loads(e.body or "{}").get("message") or e.reason)
    except ValueError:
        message = str(e.reason)
    kind: type[store.StoreError] = {404: store.NotFound, 409: store.Conflict, 422: store.Invalid}.get(
        int(e.status or 0), store.StoreError
    )
    return kind(message)


class KubeStore:
    """Custom objects in one namespace of the cluster a kubeconfig names."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None) -> None:
        api_client = (
            k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
            if kubeconfig or context
            else None
        )
        if api_client is None:
            try:
                k8s_config.load_incluster_config()
                api_client = k8s.ApiClient()
            except k8s_config.ConfigException:
                api_client = k8s_config.new_client_from_config()
        self.api = k8s.CustomObjectsApi(api_client)
        if namespace is None:
            try:
                _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                namespace = active.get("context", {}).get("namespace") or "default"
            except (k8s_config.ConfigException, TypeError):
                namespace = "default"
        self.namespace = namespace
        self.description = f"Kubernetes at {api_client.configuration.host}, namespace {namespace}"

    def _call(self, resource: store.Resource, verb: str, *args: Any, **kwargs: Any) -> Any:
        scope = "namespaced" if resource.NAMESPACED else "cluster"
        method = getattr(self.api, verb.format(scope=scope))
        where = (
            (meta.GROUP, meta.VERSION, self.namespace, resource.PLURAL)
            if resource.NAMESPACED
            else (meta.GROUP, meta.VERSION, resource.PLURAL)
        )
        try:
            return method(*where, *args, **kwargs)
        except k8s.ApiException as e:
            raise _error(e) from e

    def create(self, resource: store.Resource, body: store.Body) -> store.Body:
        body = {**body, "apiVersion": meta.API_VERSION, "kind": resource.KIND}
        body.pop("status", None)
        return dict(self._call(resource, "create_{scope}_custom_object", body))

    def get(self, resource: store.Resource, name: str) -> store.Body:
        return dict(self._call(resource, "get_{scope}_custom_object", name))

    def list(self, resource: store.Resource) -> list[store.Body]:
        items = self._call(resource, "list_{scope}_custom_object")["items"]
        return sorted((dict(i) for i in items), key=lambda i: str(i["metadata"]["name"]))

    def patch(self, resource: store.Resource, name: str, patch: store.Body, *, status: bool = False) -> store.Body:
        verb = "patch_{scope}_custom_object_status" if status else "patch_{scope}_custom_object"
        return dict(self._call(resource, verb, name, patch))

    def delete(self, resource: store.Resource, name: str) -> None:
        self._call(resource, "delete_{scope}_custom_object", name)
