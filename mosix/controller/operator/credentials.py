"""One source of credentials for Kopf and for our store: in-cluster first, else the kubeconfig.

Kopf's own login would load them into the kubernetes client's global default; loading them here
into a fresh configuration, read at call time ($KUBECONFIG included), keeps both on the same server
as the same identity, and keeps global state out of it.
"""

from __future__ import annotations

import os

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config


def configuration() -> k8s.Configuration:
    """The service account's configuration in a pod, else the kubeconfig's current context."""
    cfg = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=cfg)
        except (k8s_config.ConfigException, OSError) as e:
            raise kopf.LoginError(f"no Kubernetes credentials: neither in a pod nor a usable kubeconfig ({e})") from e
    return cfg


def api_client(cfg: k8s.Configuration) -> k8s.ApiClient:
    """The official client over those credentials, for `mosix.client`."""
    return k8s.ApiClient(cfg)


def close(api: k8s.ApiClient) -> None:
    api.close()  # type: ignore[no-untyped-call]


def connection_info(cfg: k8s.Configuration) -> kopf.ConnectionInfo:
    """The same credentials in Kopf's terms."""
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization") or ""
    scheme, _, token = header.partition(" ") if " " in header else ("", "", header)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )
