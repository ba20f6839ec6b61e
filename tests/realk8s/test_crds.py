"""The CRDs of crds/ on a real kube-apiserver: schemas, CEL rules, printer columns, status, names.

Every manifest of examples/ must be accepted and stored as written; every manifest of
examples/invalid/ must be rejected with the field of its first line (``# expect: spec.x``) named in
the server's error; and each CEL rule must be enforced by the server itself: a copy of the MosixJob
CRD without that one rule accepts the manifest that the real CRD rejects.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.realkube import Kube

pytestmark = pytest.mark.realk8s

REPO = pathlib.Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))
JOB_CRD = CRDS / "mosix.dev_mosixjobs.yaml"
TEST_GROUP = f"{secrets.token_hex(2)}.mosixtest.dev"  # apart from other sessions on a shared server

MJ_COLUMNS = ["NAME", "WHERE", "FROM", "CLASS", "FRZ", "NMIGS", "PRI", "JOB", "STATUS", "AGE"]
MN_COLUMNS = ["NAME", "NUMBER", "ADDRESS", "STATUS", "LOAD", "SPEED", "CPUS", "FROZEN", "UTIL", "PROCS",
              "MEM-AVAIL", "MEM-TOTAL", "AGE"]
AGE = re.compile(r"^\d+(s|m\d*s?|h\d*m?|d\d*h?)$")


# --- reading manifests and kubectl's output ---------------------------------------------------------

def expected_field(path: pathlib.Path) -> str:
    """The field an invalid manifest must be rejected for: its first line, ``# expect: spec.x``."""
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# expect: (\S+)", first)
    assert match, f"{path.name}: first line must be '# expect: <field path>', not {first!r}"
    return match.group(1)


def manifest(path: pathlib.Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: one manifest per file"
    doc: dict[str, Any] = docs[0]
    return doc


FIELD_ERROR = re.compile(r"(?:^|: |\[|, |\* )((?:spec|status|metadata)(?:\.[A-Za-z0-9_-]+|\[\d+\])*): ",
                         re.MULTILINE)
UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')


def named_fields(error: str) -> set[str]:
    """Every field path the API server's error text names.

    Validation errors read ``… is invalid: spec.placement: Unsupported value …`` (several are joined as
    ``[spec.a: …, spec.b: …]``); strict decoding errors read ``unknown field "spec.cpus"``.
    """
    return set(FIELD_ERROR.findall(error)) | set(UNKNOWN_FIELD.findall(error))


def table(text: str) -> list[dict[str, str]]:
    """kubectl's aligned table as rows of column → cell, cut at the header's column starts."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "kubectl printed no table"
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def header(text: str) -> list[str]:
    return text.splitlines()[0].split()


def contains(stored: Any, written: Any) -> bool:
    """Whether every field written is in stored, with the same value (the server may add defaults)."""
    if isinstance(written, dict):
        return isinstance(stored, dict) and all(
            k in stored and contains(stored[k], v) for k, v in written.items())
    if isinstance(written, list):
        return (isinstance(stored, list) and len(stored) == len(written)
                and all(contains(s, w) for s, w in zip(stored, written, strict=True)))
    if isinstance(written, float) or isinstance(stored, float):
        return isinstance(stored, int | float) and float(stored) == float(written)
    return bool(stored == written)


def schema_at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema node of a dotted field path (array items stepped through)."""
    node = schema
    for part in dotted.split("."):
        while node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


def words(text: str) -> str:
    return " ".join(text.split())


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kube(kube_crds: Kube) -> Kube:
    return kube_crds


@pytest.fixture(scope="module")
def namespace(kube: Kube) -> Iterator[str]:
    name = f"mosix-test-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name, check=True)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def unique() -> str:
    """A suffix that keeps cluster-scoped test objects apart on a shared server."""
    return secrets.token_hex(3)


def create(kube: Kube, doc: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    args = ["create", "-o", "json", "-f", "-"] + (["-n", namespace] if namespace else [])
    created: dict[str, Any] = json.loads(kube.kubectl(*args, stdin=json.dumps(doc), check=True).stdout)
    return created


def get(kube: Kube, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", resource, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    got: dict[str, Any] = json.loads(kube.kubectl(*args, check=True).stdout)
    return got


# --- the CRDs themselves ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(CRDS.glob("*.yaml")), ids=lambda p: p.name)
def test_crd_established(kube: Kube, path: pathlib.Path) -> None:
    """The server took the CRD as it is (structural schema, CEL rules within cost) and serves it."""
    name = manifest(path)["metadata"]["name"]
    crd = get(kube, "crd", name)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True", crd["status"]
    assert conditions.get("NamesAccepted") == "True", crd["status"]
    assert conditions.get("NonStructuralSchema") in (None, "False"), crd["status"]


def test_api_resources_short_names_and_category(kube: Kube) -> None:
    out = kube.kubectl("api-resources", "--api-group=mosix.dev", "-o", "wide", check=True).stdout
    rows = {row["KIND"]: row for row in table(out)}
    assert set(rows) == {"MosixJob", "MosixNode", "MosixCluster"}
    assert (rows["MosixJob"]["SHORTNAMES"], rows["MosixJob"]["NAMESPACED"]) == ("mj", "true")
    assert (rows["MosixNode"]["SHORTNAMES"], rows["MosixNode"]["NAMESPACED"]) == ("mn", "false")
    assert (rows["MosixCluster"]["SHORTNAMES"], rows["MosixCluster"]["NAMESPACED"]) == ("mc", "false")
    assert all(row["CATEGORIES"] == "mosix" for row in rows.values())
    assert all(row["APIVERSION"] == "mosix.dev/v1alpha1" for row in rows.values())


# --- examples and invalid manifests -----------------------------------------------------------------

def test_examples_cover_the_tutorial() -> None:
    """One manifest per tutorial scenario, plus a MosixCluster and a MosixNode, and 30+ invalid ones."""
    kinds = [manifest(p)["kind"] for p in EXAMPLES]
    assert kinds.count("MosixJob") >= 10
    assert "MosixCluster" in kinds
    assert "MosixNode" in kinds
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_accepted(kube: Kube, namespace: str, path: pathlib.Path) -> None:
    """Accepted (server-side dry run, kubectl's strict field validation) and kept as written."""
    done = kube.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", str(path))
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)
    written = manifest(path)
    assert contains(stored.get("spec"), written["spec"]), (written["spec"], stored.get("spec"))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_rejected(kube: Kube, namespace: str, path: pathlib.Path) -> None:
    """Rejected on create, the expected field named, nothing stored."""
    field = expected_field(path)
    doc = manifest(path)
    done = kube.kubectl("create", "-n", namespace, "-f", str(path))
    if done.returncode == 0:  # do not leave it behind, then fail
        kube.kubectl("delete", "-n", namespace, "-f", str(path), "--wait=false")
    assert done.returncode != 0, f"accepted: {done.stdout}"
    assert field in named_fields(done.stderr), f"expected {field} named in: {done.stderr}"
    gone = kube.kubectl("get", "-n", namespace, doc["kind"].lower() + ".mosix.dev", doc["metadata"]["name"])
    assert gone.returncode != 0, gone.stdout
    assert "NotFound" in gone.stderr


# --- kubectl explain and get ------------------------------------------------------------------------

@pytest.mark.parametrize("dotted", [
    "mosixjob.spec.placement", "mosixjob.spec.checkpoint.intervalMinutes", "mosixjob.spec.recover.fdRemap",
    "mosixjob.status.migrations", "mosixnode.status.load", "mosixcluster.spec.grid.pri",
])
def test_explain_prints_the_description(kube: Kube, dotted: str) -> None:
    kind, field = dotted.split(".", 1)
    path = next(p for p in CRDS.glob("*.yaml") if manifest(p)["spec"]["names"]["singular"] == kind)
    schema = manifest(path)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = schema_at(schema, field)
    for _ in range(20):  # the server publishes a new CRD's OpenAPI shortly after it is Established
        done = kube.kubectl("explain", dotted)
        if done.returncode == 0:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"FIELD: {field.rsplit('.', 1)[-1]}" in out, out
    assert words(node["description"]) in words(out), out
    for value in node.get("enum", []):
        assert re.search(rf"^\s+{re.escape(value)}$", out, re.MULTILINE), f"enum {value} not listed: {out}"


def test_get_mj_reads_like_mosps(kube: Kube, namespace: str) -> None:
    doc = manifest(REPO / "examples" / "mosixjob-queue-priority.yaml")
    name = doc["metadata"]["name"]
    create(kube, doc, namespace)
    fresh = kube.kubectl("get", "mj", name, "-n", namespace, check=True).stdout
    assert header(fresh) == MJ_COLUMNS
    (row,) = table(fresh)
    assert (row["NAME"], row["JOB"], row["STATUS"], row["WHERE"]) == (name, "1", "", ""), "no status yet"
    status = {"where": "cmos-18", "homeNode": "here", "className": "local", "migrations": 1, "priority": 60,
              "phase": "Running"}
    kube.kubectl("patch", "mj", name, "-n", namespace, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}), check=True)
    (row,) = table(kube.kubectl("get", "mj", name, "-n", namespace, check=True).stdout)
    assert AGE.match(row.pop("AGE")), row
    assert row == {"NAME": name, "WHERE": "cmos-18", "FROM": "here", "CLASS": "local", "FRZ": "",
                   "NMIGS": "1", "PRI": "60", "JOB": "1", "STATUS": "Running"}
    wide = kube.kubectl("get", "mj", name, "-n", namespace, "-o", "wide", check=True).stdout
    assert header(wide) == [*MJ_COLUMNS[:-1], "COMMAND", "AGE"]
    assert "testload" in table(wide)[0]["COMMAND"]


def test_get_mn_reads_like_mosctl_status(kube: Kube, unique: str) -> None:
    doc = manifest(REPO / "examples" / "mosixnode.yaml")
    name = doc["metadata"]["name"] = f"mos1-{unique}"
    create(kube, doc)
    try:
        status = {"state": "Running Normally", "load": 0.5, "speed": 10000, "cpus": 2, "frozen": 1,
                  "util": 50, "procs": 3, "memory": {"availableMb": 1000, "totalMb": 2000}}
        kube.kubectl("patch", "mn", name, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": status}), check=True)
        out = kube.kubectl("get", "mn", name, check=True).stdout
        assert header(out)[:3] == MN_COLUMNS[:3]
        assert " ".join(header(out)) == " ".join(MN_COLUMNS)
        (row,) = table(out)
        assert AGE.match(row.pop("AGE")), row
        assert row == {"NAME": name, "NUMBER": "1", "ADDRESS": "132.65.174.1", "STATUS": "Running Normally",
                       "LOAD": "0.5", "SPEED": "10000", "CPUS": "2", "FROZEN": "1", "UTIL": "50",
                       "PROCS": "3", "MEM-AVAIL": "1000", "MEM-TOTAL": "2000"}
    finally:
        kube.kubectl("delete", "mn", name, "--wait=false")


# --- status subresource, short names, category ------------------------------------------------------

def test_status_is_a_subresource(kube: Kube, namespace: str) -> None:
    doc = manifest(REPO / "examples" / "mosixjob-job-id.yaml")
    name = doc["metadata"]["name"] = "status-subresource"
    doc["status"] = {"phase": "Failed", "migrations": 7}
    created = create(kube, doc, namespace)
    assert "status" not in created or created["status"].get("phase") != "Failed", "status taken on create"
    assert created["metadata"]["generation"] == 1

    kube.kubectl("patch", "mj", name, "-n", namespace, "--subresource=status", "--type=merge",
                 "-p", '{"status": {"phase": "Running", "migrations": 2}, "spec": {"jobId": 99}}', check=True)
    after_status = get(kube, "mj", name, namespace)
    assert (after_status["status"]["phase"], after_status["status"]["migrations"]) == ("Running", 2)
    assert after_status["spec"]["jobId"] == 20, "a status patch changed spec"
    assert after_status["metadata"]["generation"] == 1

    kube.kubectl("patch", "mj", name, "-n", namespace, "--type=merge",
                 "-p", '{"spec": {"jobId": 21}, "status": {"phase": "Failed", "migrations": 9}}', check=True)
    after_spec = get(kube, "mj", name, namespace)
    assert after_spec["spec"]["jobId"] == 21
    assert after_spec["metadata"]["generation"] == 2
    assert (after_spec["status"]["phase"], after_spec["status"]["migrations"]) == ("Running", 2), \
        "a spec update changed status"


def test_short_names_and_category(kube: Kube, namespace: str, unique: str) -> None:
    job = manifest(REPO / "examples" / "mosixjob-best-node.yaml")
    node = manifest(REPO / "examples" / "mosixnode.yaml")
    node["metadata"]["name"] = f"mos1-cat-{unique}"
    mosix_cluster = manifest(REPO / "examples" / "mosixcluster.yaml")
    mosix_cluster["metadata"]["name"] = f"cat-{unique}"
    create(kube, job, namespace)
    create(kube, node)
    create(kube, mosix_cluster)
    try:
        job_ref = f"mosixjob.mosix.dev/{job['metadata']['name']}"
        node_ref = f"mosixnode.mosix.dev/{node['metadata']['name']}"
        cluster_ref = f"mosixcluster.mosix.dev/{mosix_cluster['metadata']['name']}"
        assert job_ref in kube.kubectl("get", "mj", "-n", namespace, "-o", "name", check=True).stdout.split()
        assert node_ref in kube.kubectl("get", "mn", "-o", "name", check=True).stdout.split()
        assert cluster_ref in kube.kubectl("get", "mc", "-o", "name", check=True).stdout.split()
        everything = kube.kubectl("get", "mosix", "-n", namespace, "-o", "name", check=True).stdout.split()
        assert {job_ref, node_ref, cluster_ref} <= set(everything)
        assert all(ref.split("/")[0].endswith(".mosix.dev") for ref in everything), everything
    finally:
        kube.kubectl("delete", "mn", node["metadata"]["name"], "--wait=false")
        kube.kubectl("delete", "mc", mosix_cluster["metadata"]["name"], "--wait=false")


# --- CEL rules are enforced by the server -----------------------------------------------------------

Where = tuple[str | int, ...]


def cel_rules(schema: dict[str, Any], at: Where = ()) -> Iterator[tuple[Where, int]]:
    """(where in the schema, index) of every x-kubernetes-validations rule."""
    for index, _ in enumerate(schema.get("x-kubernetes-validations", [])):
        yield at, index
    for key, sub in schema.get("properties", {}).items():
        yield from cel_rules(sub, (*at, "properties", key))
    if "items" in schema:
        yield from cel_rules(schema["items"], (*at, "items"))


JOB_SCHEMA: dict[str, Any] = manifest(JOB_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
RULES = list(cel_rules(JOB_SCHEMA))


def rule_of(at: Where, index: int) -> dict[str, str]:
    node: Any = JOB_SCHEMA
    for key in at:
        node = node[key]
    rule: dict[str, str] = node["x-kubernetes-validations"][index]
    return rule


def without_rule(n: int) -> dict[str, Any]:
    """The MosixJob CRD in group cel<n>.<random>.mosixtest.dev without rule n, short names or categories."""
    crd = copy.deepcopy(manifest(JOB_CRD))
    group = f"cel{n}.{TEST_GROUP}"
    crd["spec"]["group"] = group
    names = crd["spec"]["names"]
    names.pop("shortNames", None)
    names.pop("categories", None)
    names["singular"] = f"mosixjobcel{n}"
    names["plural"] = f"mosixjobscel{n}"
    crd["metadata"]["name"] = f"{names['plural']}.{group}"
    at, index = RULES[n]
    node: Any = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in at:
        node = node[key]
    del node["x-kubernetes-validations"][index]
    if not node["x-kubernetes-validations"]:
        del node["x-kubernetes-validations"]
    return crd


@pytest.fixture(scope="module")
def crds_without_a_rule(kube: Kube) -> Iterator[list[str]]:
    """One copy of the MosixJob CRD per CEL rule, each without that rule, installed; their groups."""
    copies = [without_rule(n) for n in range(len(RULES))]
    kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(copies), check=True)
    try:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     *[f"crd/{c['metadata']['name']}" for c in copies], check=True)
        yield [c["spec"]["group"] for c in copies]
    finally:
        kube.kubectl("delete", "--wait=false", *[f"crd/{c['metadata']['name']}" for c in copies])


Rejections = dict[str, tuple[dict[str, Any], str]]


@pytest.fixture(scope="module")
def real_rejections(kube: Kube, namespace: str) -> Rejections:
    """Each invalid MosixJob manifest by name, with the real CRD's error for it (server-side dry run)."""
    found = {}
    for path in INVALID:
        doc = manifest(path)
        if doc["kind"] == "MosixJob":
            done = kube.kubectl("create", "--dry-run=server", "-n", namespace, "-f", str(path))
            found[doc["metadata"]["name"]] = (doc, done.stderr if done.returncode != 0 else "")
    return found


def test_every_cel_rule_is_listed() -> None:
    """The MosixJob CRD has the rules the models declare (8 on spec, 1 on a node range, 1 on recover)."""
    assert len(RULES) >= 10, RULES


@pytest.mark.parametrize("n", range(len(RULES)), ids=lambda n: rule_of(*RULES[n])["message"][:40])
def test_cel_rule_enforced_by_the_server(kube: Kube, namespace: str, crds_without_a_rule: list[str],
                                         real_rejections: Rejections, n: int) -> None:
    """A copy of the CRD without rule n accepts what the real CRD rejects for rule n, and no more."""
    message = rule_of(*RULES[n])["message"]
    breaking = [doc for doc, error in real_rejections.values() if message in error]
    assert breaking, f"no manifest in examples/invalid/ breaks CEL rule {rule_of(*RULES[n])}"
    group = crds_without_a_rule[n]

    def on_copy(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "apiVersion": f"{group}/v1alpha1"}

    for doc in breaking:
        done = kube.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                            stdin=json.dumps(on_copy(doc)))
        assert done.returncode == 0, f"{group}, without {message!r}, still rejects: {done.stderr}"

    # The copy is otherwise the same CRD: it still rejects the manifests that break the other rules.
    others = [doc for doc, error in real_rejections.values() if doc not in breaking
              and any(rule_of(*r)["message"] in error for r in RULES)]
    assert others
    done = kube.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                        stdin=yaml.safe_dump_all([on_copy(d) for d in others]))
    for doc in others:
        name = doc["metadata"]["name"]
        assert f'"{name}" is invalid' in done.stderr, f"{group} accepted {name}"
