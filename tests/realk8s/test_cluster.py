"""The real single-node cluster (shared/k8s/cluster) starts from the project's own Kubernetes build."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.realkube import Kube

pytestmark = pytest.mark.realcluster


def test_node_ready_and_ours(kube_cluster: Kube) -> None:
    """node1 is Ready, and its kubelet is the same build as the API server."""
    node = json.loads(kube_cluster.kubectl("get", "node", "node1", "-o", "json", check=True).stdout)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True", node["status"]["conditions"]
    server = json.loads(kube_cluster.kubectl("version", "-o", "json", check=True).stdout)["serverVersion"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == server["gitVersion"]
