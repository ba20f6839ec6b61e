"""Generates the CustomResourceDefinitions from the typed models: the models are the only schema.

`python -m mosix.api.crdgen` writes crds/ and charts/mosix/crds/; `--check` fails when either is stale.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

import pydantic
import yaml

from mosix.api import cluster, job, meta, node

Schema = dict[str, Any]
Resource = type[job.MosixJob] | type[node.MosixNode] | type[cluster.MosixCluster]
RESOURCES: tuple[Resource, ...] = (job.MosixJob, node.MosixNode, cluster.MosixCluster)

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "MosixJob": [
        {"name": "Where", "type": "string", "jsonPath": ".status.where", "description": "mosps WHERE"},
        {"name": "From", "type": "string", "jsonPath": ".status.homeNode", "description": "mosps FROM: the home node"},
        {"name": "Class", "type": "string", "jsonPath": ".status.className", "description": "mosps CLASS"},
        {"name": "Frz", "type": "string", "jsonPath": ".status.frozen", "description": "mosps FRZ: why frozen"},
        {"name": "NMigs", "type": "integer", "jsonPath": ".status.migrations", "description": "mosps NMIGS"},
        {"name": "Pri", "type": "integer", "jsonPath": ".status.priority", "description": "mosq PRI"},
        {"name": "Job", "type": "integer", "jsonPath": ".spec.jobId", "description": "mosrun -J"},
        {"name": "Status", "type": "string", "jsonPath": ".status.phase", "description": "Phase"},
        {"name": "Command", "type": "string", "jsonPath": ".spec.command", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "MosixNode": [
        {"name": "Number", "type": "integer", "jsonPath": ".spec.number", "description": "Logical node number"},
        {"name": "Address", "type": "string", "jsonPath": ".spec.address"},
        {"name": "Status", "type": "string", "jsonPath": ".status.state", "description": "mosctl status"},
        {"name": "Load", "type": "number", "jsonPath": ".status.load", "description": "mon l"},
        {"name": "Speed", "type": "integer", "jsonPath": ".status.speed", "description": "MOSIX units"},
        {"name": "CPUs", "type": "integer", "jsonPath": ".status.cpus"},
        {"name": "Frozen", "type": "integer", "jsonPath": ".status.frozen", "description": "mon f"},
        {"name": "Util", "type": "integer", "jsonPath": ".status.util", "description": "percent"},
        {"name": "Procs", "type": "integer", "jsonPath": ".status.procs"},
        {"name": "Mem-Avail", "type": "integer", "jsonPath": ".status.memory.availableMb", "description": "MB"},
        {"name": "Mem-Total", "type": "integer", "jsonPath": ".status.memory.totalMb", "description": "MB"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "MosixCluster": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterName"},
        {"name": "Alive", "type": "integer", "jsonPath": ".status.nodesAlive"},
        {"name": "Dead", "type": "integer", "jsonPath": ".status.nodesDead"},
        {"name": "Queued", "type": "integer", "jsonPath": ".status.queued"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.running"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def _models_by_name(root: type[pydantic.BaseModel]) -> dict[str, type[pydantic.BaseModel]]:
    """Every model reachable from root's fields, by class name (the key pydantic uses in $defs)."""
    found: dict[str, type[pydantic.BaseModel]] = {}
    stack: list[Any] = [root]
    while stack:
        tp = stack.pop()
        if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
            if tp.__name__ in found:
                continue
            found[tp.__name__] = tp
            stack.extend(f.annotation for f in tp.model_fields.values())
        stack.extend(getattr(tp, "__args__", ()))
    return found


def _structural(schema: Schema, defs: Schema, models: dict[str, type[pydantic.BaseModel]]) -> Schema:
    """Turns pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        outer = {k: v for k, v in schema.items() if k != "$ref"}
        resolved = _structural({**defs[name], **outer}, defs, models)
        rules = getattr(models.get(name), "__cel__", None)
        if rules:
            resolved["x-kubernetes-validations"] = list(rules)
        return resolved
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {schema}")
        outer = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return _structural({**options[0], **outer}, defs, models)
    out: Schema = {}
    for key, value in schema.items():
        if key in ("title", "$defs", "additionalProperties", "properties", "items"):
            continue
        if key == "default" and value in (None, [], {}):
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        out[key] = value
    if "properties" in schema:
        out["properties"] = {k: _structural(v, defs, models) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = _structural(schema["items"], defs, models)
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(schema["additionalProperties"], defs, models)
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    return out


def openapi_schema(resource: Resource) -> Schema:
    """The structural schema of one resource: spec and status from the models, metadata left to the server."""
    models = _models_by_name(resource)
    raw = resource.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    props = {name: _structural(raw["properties"][name], defs, models) for name in ("spec", "status")}
    for part in props.values():
        part.pop("default", None)
    return {
        "type": "object",
        "description": (resource.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {"type": "string", "description": "mosix.dev/v1alpha1"},
            "kind": {"type": "string", "description": resource.KIND},
            "metadata": {"type": "object"},
            **props,
        },
        "required": ["spec"] if resource is not cluster.MosixCluster else [],
    }


def crd(resource: Resource) -> Schema:
    """The CustomResourceDefinition of one resource."""
    schema = openapi_schema(resource)
    if not schema["required"]:
        del schema["required"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.PLURAL}.{meta.GROUP}"},
        "spec": {
            "group": meta.GROUP,
            "scope": "Namespaced" if resource.NAMESPACED else "Cluster",
            "names": {
                "kind": resource.KIND,
                "listKind": f"{resource.KIND}List",
                "plural": resource.PLURAL,
                "singular": resource.SINGULAR,
                "shortNames": list(resource.SHORT_NAMES),
                "categories": [meta.CATEGORY],
            },
            "versions": [
                {
                    "name": meta.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[resource.KIND],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m mosix.api.crdgen` from mosix/api; do not edit.\n"


def rendered() -> dict[str, str]:
    """File name → YAML text, for every CRD."""
    return {
        f"{meta.GROUP}_{r.PLURAL}.yaml": HEADER + yaml.safe_dump(crd(r), sort_keys=False, width=120) for r in RESOURCES
    }


def targets(top: pathlib.Path) -> list[pathlib.Path]:
    """Where the CRDs live: crds/ and the chart's copy."""
    return [top / "crds", top / "charts" / "mosix" / "crds"]


def stale(top: pathlib.Path) -> list[str]:
    """The generated files that differ from what the models give."""
    files = rendered()
    bad = []
    for folder in targets(top):
        present = {p.name for p in folder.glob("*.yaml")} if folder.is_dir() else set()
        bad += [
            str(folder / n)
            for n, text in files.items()
            if not (folder / n).is_file() or (folder / n).read_text() != text
        ]
        bad += [str(folder / n) for n in present - files.keys()]
    return bad


def write(top: pathlib.Path) -> None:
    for folder in targets(top):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
        for name, text in rendered().items():
            (folder / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosix.api.crdgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if crds/ or the chart's copy is stale")
    parser.add_argument("--top", type=pathlib.Path, default=pathlib.Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.top)
        for path in bad:
            print(f"stale: {path} (run: python -m mosix.api.crdgen)", file=sys.stderr)
        return 1 if bad else 0
    write(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
