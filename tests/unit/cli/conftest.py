"""A local cluster store in a temporary folder, with the tutorial's nodes, for the commands to read."""

from __future__ import annotations

import pathlib

import pytest

from mosix.api import job, meta, node
from mosix.client import client, local


@pytest.fixture
def api(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> client.Client:
    monkeypatch.setenv("MOSIX_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("MOSIX_KUBECONFIG", raising=False)
    monkeypatch.setenv("MOSIX_NODE", "mos1")
    store = local.LocalStore()
    store.init()
    api = client.Client(store)
    for number, name in [(1, "mos1"), (16, "cmos-16"), (17, "cmos-17"), (18, "cmos-18")]:
        body = node.MosixNode(
            metadata=meta.ObjectMeta(name=name),
            spec=node.MosixNodeSpec(number=number, address=f"132.65.174.{number}", hostname=f"{name}.cs.huji.ac.il"),
        ).wire()
        store.create(node.MosixNode, body)
    return api


def submit(
    api: client.Client, name: str, line: str, spec: job.MosixJobSpec, status: dict[str, object] | None = None
) -> job.MosixJob:
    made = api.submit(spec, name=name, annotations={client.COMMAND_LINE_ANNOTATION: line})
    return api.patch_job_status(name, status) if status else made
