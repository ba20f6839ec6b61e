"""Tables as in the tutorial (tab-aligned columns), or the objects as JSON or YAML."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart, like ps; the last column is not padded."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] if len(r) > 1 else r[0]
        for r in cells
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def objects(items: list[dict[str, Any]], fmt: str, out: TextIO | None = None) -> None:
    """-o json|yaml: a Kubernetes-style List of the objects."""
    out = out or sys.stdout
    body = {"apiVersion": "v1", "kind": "List", "items": items}
    if fmt == "json":
        out.write(json.dumps(body, indent=2) + "\n")
    else:
        out.write(yaml.safe_dump(body, sort_keys=False))
