"""The e2e cluster: local by default; the real API server named by MOSIX_E2E_KUBECONFIG otherwise."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e import harness


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[harness.Cluster]:
    kubeconfig = os.environ.get("MOSIX_E2E_KUBECONFIG")
    c = harness.Cluster(tmp_path, kubeconfig)
    if kubeconfig:
        kubectl = ["kubectl", "--kubeconfig", kubeconfig]
        subprocess.run([*kubectl, "apply", "--server-side", "-f", str(harness.REPO / "crds")], check=True,
                       capture_output=True)
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s", "-f",
                        str(harness.REPO / "crds")], check=True, capture_output=True)
        subprocess.run([*kubectl, "create", "namespace", c.namespace], check=True, capture_output=True)
    try:
        yield c
    finally:
        c.down()
        if kubeconfig:
            subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", c.namespace,
                            "--wait=false"], check=False, capture_output=True)
