"""The Helm chart charts/mosix, with the real helm: lint, render, schema, RBAC, monitoring; then on a real API server.

Static tests render the chart with the default values and with every optional feature on
(``values-all-features.yaml``), and check what a sysadmin relies on: the kinds, the agent's privileges (exactly
what runc and CRIU need), least-privilege RBAC (the table below is kept in step with the code), the admission
policy, the dashboard and alert rules over the project's own metric names. Each file of ``invalid/`` must be
refused by values.schema.json with the field of its first line (``# expect: /path``) named.

On the real kube-apiserver (fixture ``kube_apiserver``): ``helm install`` (no pods run there, objects are
stored), RBAC checked with ``kubectl auth can-i --as=system:serviceaccount:…``, the admission policy enforced
on a pod-bound token with a node claim, and every rendered object accepted by ``kubectl apply --dry-run=server``.
The CRDs of charts/mosix/crds are crdgen's (tested by the lead's drift test, not here).
"""

from __future__ import annotations

import base64
import json
import pathlib
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client.metrics
import pytest
import yaml

from mosix.agent import selfcontrol
from mosix.api import job

from .conftest import CHART, Helm, unavailable

if TYPE_CHECKING:
    from tests.realkube import Kube

HERE = pathlib.Path(__file__).resolve().parent
ALL_FEATURES = HERE / "values-all-features.yaml"
INVALID = sorted((HERE / "invalid").glob("*.yaml"))
DASHBOARD = CHART / "dashboards" / "mosix.json"

Obj = dict[str, Any]

# What each ServiceAccount may do: (apiGroup, resource) -> verbs. The code (operator/, nodeagent/) must stay
# within it; a change on either side changes this table.
RBAC: dict[str, dict[tuple[str, str], set[str]]] = {
    "operator": {
        ("mosix.dev", "mosixjobs"): {"get", "list", "watch", "patch"},
        ("mosix.dev", "mosixnodes"): {"get", "list", "watch", "patch"},
        ("mosix.dev", "mosixclusters"): {"get", "list", "watch", "patch", "create"},
        ("mosix.dev", "mosixjobs/status"): {"get", "patch"},
        ("mosix.dev", "mosixnodes/status"): {"get", "patch"},
        ("mosix.dev", "mosixclusters/status"): {"get", "patch"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    },
    "agent": {
        ("mosix.dev", "mosixjobs"): {"get", "list", "watch", "patch"},
        ("mosix.dev", "mosixjobs/status"): {"get", "patch"},
        ("mosix.dev", "mosixnodes"): {"get", "list", "create", "patch"},
        ("mosix.dev", "mosixnodes/status"): {"get", "patch"},
        ("mosix.dev", "mosixclusters"): {"get"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
    },
    # The post-delete hook that takes Kopf's finalizer off MosixCluster default (release-hook.yaml).
    "operator-release": {
        ("mosix.dev", "mosixclusters"): {"get", "patch"},
    },
}
# The users' roles, checked by the home agent's SubjectAccessReview (mosix/agent/userapi.py: LOG, INPUT), and the
# default roles they are aggregated to.
USER_ROLES: dict[str, tuple[dict[tuple[str, str], set[str]], set[str]]] = {
    "job-log": ({("mosix.dev", "mosixjobs/log"): {"get"}}, {"view", "edit", "admin"}),
    "job-input": ({("mosix.dev", "mosixjobs/input"): {"create"}}, {"edit", "admin"}),
}
# Delegated authentication and authorization for the agents' user API: what the agent may do through the
# Kubernetes roles it is bound to (kubectl auth can-i arguments).
DELEGATED: list[tuple[str, ...]] = [
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
    ("get", "configmaps/extension-apiserver-authentication", "-n", "kube-system"),
]
# What each must not do, checked on the real API server: (verb, resource[, subresource]).
DENIED: dict[str, list[tuple[str, ...]]] = {
    "operator": [("get", "secrets"), ("list", "secrets"), ("create", "pods", "exec"), ("delete", "mosixjobs.mosix.dev"),
                 ("create", "mosixjobs.mosix.dev"), ("delete", "mosixnodes.mosix.dev"), ("create", "pods"),
                 ("update", "clusterroles.rbac.authorization.k8s.io")],
    "agent": [("get", "secrets"), ("list", "secrets"), ("create", "pods", "exec"), ("delete", "mosixjobs.mosix.dev"),
              ("create", "mosixjobs.mosix.dev"), ("delete", "mosixnodes.mosix.dev"),
              ("list", "mosixclusters.mosix.dev"), ("patch", "mosixclusters.mosix.dev"), ("list", "pods"),
              ("create", "pods"), ("get", "configmaps"), ("get", "mosixjobs.mosix.dev", "log"),
              ("create", "mosixjobs.mosix.dev", "input")],
    "operator-release": [("get", "secrets"), ("patch", "mosixjobs.mosix.dev"), ("delete", "mosixclusters.mosix.dev"),
                         ("list", "mosixclusters.mosix.dev"), ("create", "pods")],
}
AGENT_METRICS = {
    "mosix_node_load", "mosix_node_frozen", "mosix_node_memory_available_bytes", "mosix_node_memory_total_bytes",
    "mosix_node_swap_available_bytes", "mosix_node_swap_total_bytes", "mosix_node_procs", "mosix_node_guests",
    "mosix_node_read_bytes_total", "mosix_node_write_bytes_total", "mosix_node_net_receive_bytes_total",
    "mosix_node_net_transmit_bytes_total", "mosix_node_speed", "mosix_node_up", "mosix_node_boot_time_seconds",
    "mosix_job_cpu_seconds", "mosix_job_rss_bytes", "mosix_job_read_bytes_total", "mosix_job_write_bytes_total",
    "mosix_job_migrations", "mosix_migrations_total", "mosix_migration_failures_total",
    "mosix_migration_freeze_seconds", "mosix_migration_duration_seconds", "mosix_migration_bytes_total",
    "mosix_checkpoint_seconds", "mosix_checkpoint_bytes",
}
OPERATOR_METRICS = {"mosix_queue_length", "mosix_admissions_total", "mosix_placements_total", "mosix_decision_seconds"}
HISTOGRAMS = {"mosix_migration_freeze_seconds", "mosix_migration_duration_seconds", "mosix_checkpoint_seconds",
              "mosix_decision_seconds"}
THIRD_PARTY_KINDS = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"}  # their CRDs are not served here


def render(helm: Helm, *args: str, namespace: str = "mosix", release: str = "mosix") -> list[Obj]:
    done = helm.run("template", release, str(CHART), "--namespace", namespace, *args, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name_suffix: str = "") -> Obj:
    found = [o for o in by_kind(objs, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind} *{name_suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def rules_table(role: Obj) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\bmosix_[a-z_]+\b", expr))
    return {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            if n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") in HISTOGRAMS else n
            for n in names}


@pytest.fixture(scope="module")
def default_objs(helm: Helm) -> list[Obj]:
    return render(helm)


@pytest.fixture(scope="module")
def full_objs(helm: Helm) -> list[Obj]:
    return render(helm, "-f", str(ALL_FEATURES))


# --- lint, render, schema --------------------------------------------------------------------------------------

def test_lint_strict(helm: Helm) -> None:
    for values in ([], ["-f", str(ALL_FEATURES)]):
        done = helm.run("lint", "--strict", str(CHART), *values)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 chart(s) failed" in done.stdout


def test_default_render_has_the_expected_kinds(default_objs: list[Obj]) -> None:
    kinds = sorted(o["kind"] for o in default_objs)
    assert kinds == sorted([
        "ServiceAccount", "ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
        "Deployment", "DaemonSet", "Service", "Service", "Secret", "ConfigMap",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job",  # the post-delete hook
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        "ClusterRole", "ClusterRole",  # the users' mosixjobs/log and mosixjobs/input
        "ClusterRoleBinding", "RoleBinding",  # the agent's delegated authentication and authorization
        "CustomResourceDefinition", "CustomResourceDefinition", "ClusterKopfPeering"])
    for o in default_objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mosix", o["metadata"]
        assert labels["app.kubernetes.io/instance"] == "mosix"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "mosix-0.1.0"


def test_all_features_render(full_objs: list[Obj]) -> None:
    kinds = {o["kind"] for o in full_objs}
    assert {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"} <= kinds
    assert not by_kind(full_objs, "Secret"), "with cert-manager the chart must not generate the TLS Secret itself"
    assert len(by_kind(full_objs, "ServiceMonitor")) == 2
    cert = one(full_objs, "Certificate", "-agent")
    assert set(cert["spec"]["usages"]) >= {"server auth", "client auth"}
    assert "mosix-agent" in cert["spec"]["dnsNames"]
    agent = one(full_objs, "DaemonSet")["spec"]["template"]["spec"]
    assert agent["nodeSelector"] == {"mosix.dev/node": "true"}
    assert agent["tolerations"][0]["key"] == "mosix.dev/dedicated"
    assert agent["volumes"][-1]["secret"]["secretName"] == cert["spec"]["secretName"]
    assert one(full_objs, "Deployment")["spec"]["replicas"] == 3


def test_image_values(helm: Helm) -> None:
    objs = render(helm)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = {o["kind"]: o["spec"]["template"]["spec"]["containers"][0] for o in objs
              if o["kind"] in ("Deployment", "DaemonSet")}
    assert images["Deployment"]["image"] == f"mosix/operator:{chart['appVersion']}"
    assert images["DaemonSet"]["image"] == f"mosix/agent:{chart['appVersion']}"
    objs = render(helm, "--set", "operator.image.repository=r.example/op,operator.image.tag=t1,"
                  "operator.image.pullPolicy=Never,agent.image.repository=r.example/ag,agent.image.tag=t2,"
                  "agent.image.pullPolicy=Always")
    images = {o["kind"]: o["spec"]["template"]["spec"]["containers"][0] for o in objs
              if o["kind"] in ("Deployment", "DaemonSet")}
    assert (images["Deployment"]["image"], images["Deployment"]["imagePullPolicy"]) == ("r.example/op:t1", "Never")
    assert (images["DaemonSet"]["image"], images["DaemonSet"]["imagePullPolicy"]) == ("r.example/ag:t2", "Always")


def test_chart_version_follows_the_project() -> None:
    import tomllib

    with open(CHART.parents[1] / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_values_refused_naming_the_field(helm: Helm, path: pathlib.Path) -> None:
    expect = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    assert expect, f"{path.name}: first line must be '# expect: <field>'"
    done = helm.run("template", "mosix", str(CHART), "-f", str(path))
    assert done.returncode != 0, f"{path.name} was accepted"
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert expect in done.stderr, f"{path.name}: {expect!r} not named in:\n{done.stderr}"


def test_invalid_files_cover_the_schema() -> None:
    assert len(INVALID) >= 5


# --- what the pods may do ---------------------------------------------------------------------------------------

def test_agent_is_privileged_only_as_runc_and_criu_need(default_objs: list[Obj]) -> None:
    ds = one(default_objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostIPC")
    (c,) = pod["containers"]
    assert c["securityContext"]["privileged"] is True
    assert c["command"] == ["python3", "/app/nodeagent/main.py"]
    assert c["args"][:7] == ["--node-name=$(NODE_NAME)", "--address=$(POD_IP)", "--port=7341", "--metrics-port=9341",
                             "--user-port=7342", "--state-dir=/var/lib/mosix", "--tls-dir=/etc/mosix/tls"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"cgroup": "/sys/fs/cgroup", "state": "/var/lib/mosix"}
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]} == {
        "cgroup": "/sys/fs/cgroup", "state": "/var/lib/mosix", "tls": "/etc/mosix/tls"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["tls"]["readOnly"] is True and mounts["tls"]["mountPath"] == "/etc/mosix/tls"
    secret_volumes = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secret_volumes == [one(default_objs, "Secret")["metadata"]["name"]]
    assert pod["serviceAccountName"] == "mosix-agent"


def test_operator_runs_unprivileged_with_kopf_peering(default_objs: list[Obj]) -> None:
    dep = one(default_objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert not pod.get("hostPID") and not pod.get("hostNetwork")
    (c,) = pod["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["command"] + c["args"][:2] == ["kopf", "run", "/app/operator/main.py", "--all-namespaces",
                                            "--peering=mosix"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert {p["containerPort"] for p in c["ports"]} == {9340, 8080}
    assert pod["serviceAccountName"] == "mosix-operator"
    peering = one(default_objs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "mosix"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]


def test_rbac_is_the_table(default_objs: list[Obj]) -> None:
    roles = {o["metadata"]["name"].removeprefix("mosix-"): o for o in by_kind(default_objs, "ClusterRole")}
    assert set(roles) == set(RBAC) | set(USER_ROLES)
    for name, (want, aggregated) in USER_ROLES.items():
        assert rules_table(roles[name]) == want, name
        labels = roles[name]["metadata"]["labels"]
        assert {k.removeprefix("rbac.authorization.k8s.io/aggregate-to-") for k, v in labels.items()
                if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"} == aggregated, name
    for who, want in RBAC.items():
        got = rules_table(roles[who])
        assert got == want, f"{who}: chart grants {got}, table says {want}"
        for (_, resource), verbs in got.items():
            assert "*" not in verbs and resource != "*" and "secrets" not in resource and "pods" not in resource
    bindings = {o["metadata"]["name"]: o for o in by_kind(default_objs, "ClusterRoleBinding")}
    for who in RBAC:
        (subject,) = bindings[f"mosix-{who}"]["subjects"]
        assert (subject["kind"], subject["name"], subject["namespace"]) == ("ServiceAccount", f"mosix-{who}", "mosix")
    assert set(bindings) == {f"mosix-{who}" for who in RBAC} | {"mosix-agent-auth-delegator"}
    assert not by_kind(default_objs, "Role")
    # Delegated authentication, as the kubelet's: the Kubernetes roles made for it, nothing of ours.
    delegator = bindings["mosix-agent-auth-delegator"]
    (reader,) = by_kind(default_objs, "RoleBinding")
    assert (delegator["roleRef"]["kind"], delegator["roleRef"]["name"]) == ("ClusterRole", "system:auth-delegator")
    assert (reader["metadata"]["namespace"], reader["roleRef"]["kind"], reader["roleRef"]["name"]) == (
        "kube-system", "Role", "extension-apiserver-authentication-reader")
    for binding in (delegator, reader):
        (subject,) = binding["subjects"]
        assert (subject["kind"], subject["name"], subject["namespace"]) == ("ServiceAccount", "mosix-agent", "mosix")


def test_services(default_objs: list[Obj]) -> None:
    services = {o["metadata"]["name"]: o["spec"] for o in by_kind(default_objs, "Service")}
    assert services["mosix-agent"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in services["mosix-agent"]["ports"]} == {"api": 7341, "metrics": 9341,
                                                                               "user": 7342}
    assert {p["name"]: p["port"] for p in services["mosix-operator-metrics"]["ports"]} == {"metrics": 9340}


def test_generated_tls_secret_is_a_ca_and_an_agent_certificate(default_objs: list[Obj]) -> None:
    from cryptography import x509

    secret = one(default_objs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"mosix-agent", "mosix-agent.mosix.svc", "*.mosix-agent.mosix.svc"} <= set(names)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages and x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_admission_policy(default_objs: list[Obj], helm: Helm) -> None:
    policy = one(default_objs, "ValidatingAdmissionPolicy")
    text = json.dumps(policy)
    assert "authentication.kubernetes.io/node-name" in text
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username == "system:serviceaccount:mosix:mosix-agent"')
    binding = one(default_objs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    off = render(helm, "--set", "admissionPolicy.enabled=false")
    assert not by_kind(off, "ValidatingAdmissionPolicy") and not by_kind(off, "ValidatingAdmissionPolicyBinding")


def test_admission_policy_keeps_every_other_spec_field_from_the_agent(default_objs: list[Obj]) -> None:
    """The policy names every MosixJob spec field but the agent's own: a new field must be placed on one side."""
    rules = [v["expression"] for v in one(default_objs, "ValidatingAdmissionPolicy")["spec"]["validations"]]
    fixed = [r for r in rules if "variables.isJobSpec" in r]
    assert len(fixed) == 1
    named = re.findall(r"object\.spec\.\?(\w+) == oldObject\.spec\.\?(\w+)", fixed[0])
    assert all(a == b for a, b in named)
    every = {f.alias or n for n, f in job.MosixJobSpec.model_fields.items()}
    assert every >= set(selfcontrol.SPEC_FIELDS)
    assert {a for a, _ in named} == every - set(selfcontrol.SPEC_FIELDS)


# --- monitoring ---------------------------------------------------------------------------------------------------

def test_dashboard_configmap_carries_the_dashboard(default_objs: list[Obj]) -> None:
    cm = one(default_objs, "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["mosix.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_shows_every_metric_and_only_known_ones() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used == AGENT_METRICS | OPERATOR_METRICS, (
        f"missing: {(AGENT_METRICS | OPERATOR_METRICS) - used}, unknown: {used - AGENT_METRICS - OPERATOR_METRICS}")
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for view in ("load", "frozen", "memory", "swap", "guests", "i/o", "network", "speed", "uptime", "dead",
                 "queue", "migrations", "freeze", "failures by cause", "job i/o", "job migrations"):
        assert view in titles, view
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_agent_metrics_named_here_are_the_agents() -> None:
    """AGENT_METRICS (which the dashboard must show, all of them) is what the agent exports, as scraped."""
    from mosix.agent import metrics

    suffix = {"counter": "_total", "gauge": "", "histogram": ""}  # a histogram's parts: metric_names()
    exported = {m.name + suffix[m.type] for v in vars(metrics).values()
                if isinstance(v, prometheus_client.metrics.MetricWrapperBase) for m in v.describe()}
    assert exported == AGENT_METRICS, f"not here: {exported - AGENT_METRICS}, not exported: {AGENT_METRICS - exported}"


def test_promtool_parses_every_dashboard_expression(tmp_path: pathlib.Path) -> None:
    """Each panel query is valid PromQL (checked as a recording rule; Grafana's $node becomes a regex)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("no promtool (Debian's prometheus package; hack/setup.sh installs it)")
    assert promtool is not None
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"].replace("$node", ".*") for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = [{"record": f"mosix:dashboard_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout, done.stdout


def prometheus_rules(objs: list[Obj]) -> list[Obj]:
    return [r for g in one(objs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]


def test_alerts(full_objs: list[Obj]) -> None:
    rules = {r["alert"]: r for r in prometheus_rules(full_objs)}
    assert {"MosixNodeDead", "MosixMigrationFailures", "MosixQueueNotDraining"} <= set(rules)
    for rule in rules.values():
        assert metric_names(rule["expr"]) <= AGENT_METRICS | OPERATOR_METRICS
        assert rule["labels"]["severity"] in ("warning", "critical")
    assert "mosix_node_up" in rules["MosixNodeDead"]["expr"]
    assert "mosix_migration_failures_total" in rules["MosixMigrationFailures"]["expr"]
    assert "mosix_queue_length" in rules["MosixQueueNotDraining"]["expr"]


def test_promtool_accepts_the_rules(full_objs: list[Obj], tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("no promtool (Debian's prometheus package; hack/setup.sh installs it)")
    assert promtool is not None
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": one(full_objs, "PrometheusRule")["spec"]["groups"]}))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout, done.stdout


# --- on a real API server ------------------------------------------------------------------------------------------

def _apply(kube: Kube, docs: list[Obj], *args: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("apply", *args, "-f", "-", stdin=yaml.safe_dump_all(docs))


@pytest.fixture(scope="module")
def installed(kube_crds: Kube, helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kube, str]]:
    """The chart installed with helm into its own namespace of the real API server (no pods run there)."""
    tag = secrets.token_hex(3)
    ns, release = f"mosix-chart-{tag}", f"m{tag}"
    have_peering = kube_crds.kubectl("get", "crd", "clusterkopfpeerings.kopf.dev").returncode == 0
    args = ["--kubeconfig", str(kube_crds.kubeconfig), "--namespace", ns]
    done = helm.run("install", release, str(CHART), *args, "--create-namespace", "--skip-crds",
                    "--set", f"kopfPeering.name=mosix-{tag},kopfPeering.installCRDs={str(not have_peering).lower()}",
                    timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # The post-delete hook's account exists only while helm uninstall runs it, and its Job needs pods, which this
    # server cannot run: make the account and its RBAC as the hook would, so they are checked like the others.
    hook = [o for o in render(helm, "--show-only", "templates/release-hook.yaml", namespace=ns, release=release)
            if o["kind"] != "Job"]
    assert _apply(kube_crds, hook).returncode == 0
    try:
        yield kube_crds, ns
    finally:
        helm.run("uninstall", release, *args, "--wait", "--no-hooks", timeout=300)
        kube_crds.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=yaml.safe_dump_all(hook))
        kube_crds.kubectl("delete", "namespace", ns, "--wait=false")
        kube_crds.kubectl("delete", "clusterkopfpeering", f"mosix-{tag}", "--ignore-not-found")


@pytest.mark.realk8s
def test_helm_install_on_a_real_api_server(installed: tuple[Kube, str]) -> None:
    kube, ns = installed
    tag = ns.removeprefix("mosix-chart-")
    for what in ("deployment", "daemonset", "serviceaccount", "service", "secret"):
        names = kube.kubectl("get", what, "-n", ns, "-o", "name", check=True).stdout.split()
        assert names, what
    peering = json.loads(kube.kubectl("get", "clusterkopfpeering", f"mosix-{tag}", "-o", "json", check=True).stdout)
    assert peering["kind"] == "ClusterKopfPeering"
    policy = f"m{tag}-mosix-agent-own-node"
    kube.kubectl("get", "validatingadmissionpolicy", policy, check=True)
    binding = json.loads(kube.kubectl("get", "validatingadmissionpolicybinding", policy, "-o", "json",
                                      check=True).stdout)
    assert binding["spec"]["policyName"] == policy


def _can_i(kube: Kube, sa: str, verb: str, resource: str, *more: str) -> bool:
    done = kube.kubectl("auth", "can-i", verb, resource, *more, f"--as={sa}")
    assert done.stdout.strip() in ("yes", "no"), done.stdout + done.stderr
    return done.stdout.strip() == "yes"


@pytest.mark.realk8s
@pytest.mark.parametrize("who", sorted(RBAC))
def test_rbac_on_the_real_api_server(installed: tuple[Kube, str], who: str) -> None:
    kube, ns = installed
    sa = f"system:serviceaccount:{ns}:m{ns.removeprefix('mosix-chart-')}-mosix-{who}"
    for (group, resource), verbs in RBAC[who].items():
        base, _, sub = resource.partition("/")
        qualified = f"{base}.{group}" if group else base
        for verb in sorted(verbs):
            extra = ["--subresource", sub] if sub else []
            assert _can_i(kube, sa, verb, qualified, "-A", *extra), f"{who} cannot {verb} {resource}"
    for more in DELEGATED if who == "agent" else []:
        assert _can_i(kube, sa, *more), f"{who} cannot {more}"
    for denied in DENIED[who]:
        verb, resource, *subs = denied
        extra = ["--subresource", subs[0]] if subs else []
        assert not _can_i(kube, sa, verb, resource, "-n", ns, *extra), f"{who} may {verb} {resource} {subs}"
        assert not _can_i(kube, sa, verb, resource, "-A", *extra), f"{who} may {verb} {resource} {subs} cluster-wide"


def _kubeconfig_with_token(kube: Kube, token: str, path: pathlib.Path) -> pathlib.Path:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    config["users"] = [{"name": "agent", "user": {"token": token}}]
    config["contexts"] = [{"name": "agent", "context": {"cluster": context["cluster"], "user": "agent"}}]
    config["current-context"] = "agent"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.realk8s
def test_admission_policy_keeps_each_agent_to_its_node(installed: tuple[Kube, str], tmp_path: pathlib.Path) -> None:
    """A token bound to an agent pod on node A may write MosixNode A and jobs on A, and nothing of node B."""
    kube, ns = installed
    tag = ns.removeprefix("mosix-chart-")
    sa = f"m{tag}-mosix-agent"
    node_a, node_b = f"node-a-{tag}", f"node-b-{tag}"
    try:
        for node in (node_a, node_b):
            _apply(kube, [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}]).check_returncode()
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-on-a", "namespace": ns},
               "spec": {"serviceAccountName": sa, "nodeName": node_a,
                        "containers": [{"name": "agent", "image": "mosix/agent:test"}]}}
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod), check=True)
        token = kube.kubectl("create", "token", sa, "-n", ns, "--bound-object-kind=Pod",
                             "--bound-object-name=agent-on-a", check=True).stdout.strip()
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["kubernetes.io"]["node"]["name"] == node_a, claims
        agent_config = _kubeconfig_with_token(kube, token, tmp_path / "agent.kubeconfig")

        def as_agent(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(kube.kube_bin / "kubectl"), "--kubeconfig", str(agent_config), *args],
                                  input=stdin, capture_output=True, text=True, timeout=60, check=False)

        def mosix_node(name: str, number: int) -> str:
            return yaml.safe_dump({"apiVersion": "mosix.dev/v1alpha1", "kind": "MosixNode", "metadata": {"name": name},
                                   "spec": {"number": number, "address": f"10.9.0.{number}"}})

        done = as_agent("create", "-f", "-", stdin=mosix_node(node_a, 1))
        assert done.returncode == 0, done.stderr
        done = as_agent("create", "-f", "-", stdin=mosix_node(node_b, 2))
        assert done.returncode != 0 and "only its own MosixNode" in done.stderr, done.stderr
        done = as_agent("patch", "mosixnode", node_a, "--type=merge", "-p", '{"spec": {"maxGuests": 4}}')
        assert done.returncode == 0, done.stderr

        for name, node in (("job-on-a", node_a), ("job-on-b", node_b)):
            job = {"apiVersion": "mosix.dev/v1alpha1", "kind": "MosixJob", "metadata": {"name": name, "namespace": ns},
                   "spec": {"image": "mosix/testload:local", "command": ["testload"]}}
            kube.kubectl("create", "-f", "-", stdin=yaml.safe_dump(job), check=True)
            kube.kubectl("patch", "mj", name, "-n", ns, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": {"node": node, "phase": "Running"}}), check=True)
        done = as_agent("patch", "mj", "job-on-a", "-n", ns, "--subresource=status", "--type=merge",
                        "-p", '{"status": {"message": "running here"}}')
        assert done.returncode == 0, done.stderr
        done = as_agent("patch", "mj", "job-on-b", "-n", ns, "--subresource=status", "--type=merge",
                        "-p", '{"status": {"message": "stolen"}}')
        assert done.returncode != 0 and "placed on its node" in done.stderr, done.stderr
        done = as_agent("patch", "mj", "job-on-a", "-n", ns, "--type=merge",
                        "-p", '{"spec": {"locked": true, "memoryMb": 300, "migration": {"to": "home", "serial": 1}}}')
        assert done.returncode == 0, done.stderr  # what the job asked through /run/mosix
        for field in ('{"command": ["sh"]}', '{"image": "evil/image:1"}', '{"env": {"A": "b"}}', '{"frozen": true}'):
            done = as_agent("patch", "mj", "job-on-a", "-n", ns, "--type=merge", "-p", f'{{"spec": {field}}}')
            assert done.returncode != 0 and "may change only" in done.stderr, (field, done.stderr)
        done = as_agent("patch", "mj", "job-on-b", "-n", ns, "--type=merge", "-p", '{"spec": {"locked": true}}')
        assert done.returncode != 0 and "placed on its node" in done.stderr, done.stderr
        gang = {"apiVersion": "mosix.dev/v1alpha1", "kind": "MosixJob", "metadata": {"name": "gang", "namespace": ns},
                "spec": {"image": "mosix/testload:local", "command": ["testload"], "parallel": 2, "queue": {}}}
        kube.kubectl("create", "-f", "-", stdin=yaml.safe_dump(gang), check=True)
        placed = {"node": node_b, "phase": "Running", "processes": {"0": {"node": node_b}, "1": {"node": node_a}}}
        kube.kubectl("patch", "mj", "gang", "-n", ns, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": placed}), check=True)
        done = as_agent("patch", "mj", "gang", "-n", ns, "--subresource=status", "--type=merge",
                        "-p", '{"status": {"processes": {"1": {"phase": "Running"}}}}')
        assert done.returncode == 0, done.stderr  # one of its processes is on node A
        done = as_agent("get", "secrets", "-n", ns)
        assert done.returncode != 0 and "forbidden" in done.stderr.lower(), done.stderr
    finally:
        kube.kubectl("delete", "mosixnode", node_a, node_b, "--ignore-not-found")
        kube.kubectl("delete", "node", node_a, node_b, "--ignore-not-found")


@pytest.mark.realk8s
@pytest.mark.parametrize("values", ["default", "all-features"])
def test_every_rendered_object_passes_server_dry_run(kube_crds: Kube, helm: Helm, values: str) -> None:
    ns = f"mosix-dry-{secrets.token_hex(3)}"
    objs = render(helm, *(["-f", str(ALL_FEATURES)] if values == "all-features" else []), namespace=ns)
    crds = by_kind(objs, "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    _apply(kube_crds, crds, "--server-side", "--force-conflicts").check_returncode()
    kube_crds.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      *(f"crd/{c['metadata']['name']}" for c in crds), check=True)
    kube_crds.kubectl("create", "namespace", ns, check=True)
    try:
        rest = [o for o in objs if o["kind"] != "CustomResourceDefinition" and o["kind"] not in THIRD_PARTY_KINDS]
        skipped = {o["kind"] for o in objs if o["kind"] in THIRD_PARTY_KINDS}
        assert skipped == (THIRD_PARTY_KINDS if values == "all-features" else set())
        done = _apply(kube_crds, rest, "--dry-run=server")
        assert done.returncode == 0, done.stderr
        accepted = [line for line in done.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(accepted) == len(rest), done.stdout
    finally:
        kube_crds.kubectl("delete", "namespace", ns, "--wait=false")


def test_kind_config_makes_three_mosix_workers(default_objs: list[Obj]) -> None:
    config = yaml.safe_load((CHART.parents[1] / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    pod = one(default_objs, "DaemonSet")["spec"]["template"]["spec"]
    state = next(v["hostPath"]["path"] for v in pod["volumes"] if v["name"] == "state")
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    mounts = [{m["containerPath"]: m["hostPath"] for m in n["extraMounts"]} for n in workers]
    assert len({m[state] for m in mounts}) == 3, "each worker needs its own state folder"
    assert all(m["/dev/fuse"] == "/dev/fuse" for m in mounts)
    assert all(n["labels"]["mosix.dev/node"] == "true" for n in workers)


def test_notes(helm: Helm) -> None:
    done = helm.run("install", "mosix", str(CHART), "--dry-run=client", "--namespace", "hpc", check=True)
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n hpc rollout status daemonset/mosix-agent" in notes
    assert "Secret mosix-agent-tls (generated at install)" in notes
    done = helm.run("install", "mosix", str(CHART), "--dry-run=client", "--namespace", "hpc",
                    "--set", "admissionPolicy.enabled=false,tls.certManager.enabled=true", check=True)
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "OFF: RBAC alone lets any agent patch any MosixNode and MosixJob" in notes
    assert "(cert-manager)" in notes
