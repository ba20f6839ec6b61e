"""The CRDs are generated from the models: stale files fail, and every field is explained."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from mosix.api import crdgen, job, validation

TOP = pathlib.Path(__file__).resolve().parents[3]


def test_crds_and_the_charts_copy_are_generated_from_the_models() -> None:
    assert crdgen.stale(TOP) == [], "run: python -m mosix.api.crdgen"


def test_check_fails_on_a_stale_file(tmp_path: pathlib.Path) -> None:
    crdgen.write(tmp_path)
    assert crdgen.main(["--check", "--top", str(tmp_path)]) == 0
    victim = tmp_path / "charts" / "mosix" / "crds" / "mosix.dev_mosixjobs.yaml"
    victim.write_text(victim.read_text().replace("lower runs first", "higher runs first"))
    assert crdgen.main(["--check", "--top", str(tmp_path)]) == 1


def _undocumented(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") or path.endswith("]") else [path]
    for name, sub in schema.get("properties", {}).items():
        if path == "" and name in ("metadata",):
            continue
        missing += _undocumented(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        missing += [m for m in _undocumented(schema["items"], path + "[]") if not m.endswith("[]")]
    return missing


@pytest.mark.parametrize("resource", crdgen.RESOURCES, ids=lambda r: r.KIND)
def test_every_field_has_a_description(resource: crdgen.Resource) -> None:
    assert _undocumented(crdgen.openapi_schema(resource), "") == []


def test_names_columns_and_subresources() -> None:
    spec = crdgen.crd(job.MosixJob)["spec"]
    assert spec["names"]["shortNames"] == ["mj"]
    assert spec["names"]["categories"] == ["mosix"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert columns == ["WHERE", "FROM", "CLASS", "FRZ", "NMIGS", "PRI", "JOB", "STATUS", "AGE"]


def _job(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_job(command=["a"], placement="Node"), "spec.node"),
        (_job(command=["a"], placement="Range"), "spec.nodeRanges"),
        (_job(command=["a"], node="3"), "spec.node"),
        (_job(command=["a"], queue={"priority": 70000}), "spec.queue.priority"),
        (_job(command=["a"], parallel=4), "spec.parallel"),
        (_job(), "spec"),
        (_job(command=["a"], placement="Anywhere"), "spec.placement"),
        (_job(command=["a"], nodeRanges=[{"first": 5, "last": 2}]), "spec.nodeRanges[0]"),
        (_job(recover={"from": "/c.1", "fdRemap": [{"fd": 3, "path": "/a"}, {"fd": 3, "path": "/b"}]}),
         "spec.recover"),
        (_job(command=["a"], batch="Native", gridClass=2), "spec.gridClass"),
        (_job(command=["a"], bogus=True), "spec.bogus"),
    ],
)
def test_local_validation_names_the_field(body: dict[str, Any], field: str) -> None:
    found = validation.errors("MosixJob", body)
    assert [e.path for e in found] == [field], found


def test_defaults_are_filled_like_the_api_server() -> None:
    body = validation.validate("MosixJob", _job(command=["a"]))
    assert (body["spec"]["placement"], body["spec"]["gridClass"], body["spec"]["image"]) == (
        "Home", 0, job.DEFAULT_IMAGE)
