"""`python -m mosix.controller.operator.release`: the chart's post-delete hook.

Kopf guards the control-loop daemon with a finalizer on MosixCluster `default` and takes it off only when
the object is deleted while an operator runs. `helm uninstall` removes the operators together with their
RBAC, so nobody is left to do that and `kubectl delete mc default` would hang: this takes it off once they
are gone (the object itself, the cluster's configuration, stays, like the CRDs and the jobs).
"""

from __future__ import annotations

import logging
import sys

import kopf

from mosix.api import cluster
from mosix.client import client, kube, store
from mosix.controller.operator import control, credentials, runtime

log = logging.getLogger("mosix.release")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        connection = credentials.api_client(credentials.configuration())
    except kopf.LoginError as e:
        log.error("%s", e)
        return 1
    try:
        api = client.Client(kube.KubeStore(namespace=kube.ALL_NAMESPACES, api_client=connection))
        released = control.release_cluster(api, runtime.FINALIZER)
    except store.StoreError as e:
        log.error("cannot release MosixCluster %s: %s", cluster.DEFAULT_NAME, e)
        return 1
    finally:
        credentials.close(connection)
    log.info("MosixCluster %s: %s", cluster.DEFAULT_NAME,
             f"finalizer {runtime.FINALIZER} removed" if released else "no finalizer of ours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
