"""The container images, built by mosix/images.py (the `mosix-images` command) with the real Docker engine.

Both images are built once per session from the base the command chooses (here, with no registry reachable:
local/debian:trixie, made with debootstrap + docker import when missing); then the agent must run CRIU 4.x,
runc and import pycriu next to mosix, the operator must run kopf as a non-root user, and both must carry the
OCI labels of this checkout. The helpers that need no engine (mirror, build context) are tested too.
"""

from __future__ import annotations

import io
import pathlib
import re
import subprocess
import tarfile

import docker
import docker.errors
import pytest

from mosix import images

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built(docker_client: docker.DockerClient) -> dict[str, images.Built]:
    """Both images, built once for the session (cold: minutes; warm: seconds)."""
    done = images.build_all(docker_client, extra_ca=images.extra_ca_certs(), tag="test")
    return {b.name: b for b in done}


def run(client: docker.DockerClient, image: str, *command: str, user: str | None = None) -> str:
    out = client.containers.run(image, list(command), remove=True, network_disabled=True, user=user or "",
                                stdout=True, stderr=True)
    return out.decode() if isinstance(out, bytes) else str(out)


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_both_images_carry_the_oci_labels(docker_client: docker.DockerClient,
                                          built: dict[str, images.Built]) -> None:
    assert set(built) == {"operator", "agent"}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    for name, b in built.items():
        assert b.tag == f"mosix/{name}:test"
        labels = docker_client.images.get(b.tag).labels
        assert labels["org.opencontainers.image.version"] == images.project_version()
        assert labels["org.opencontainers.image.title"] == f"mosix-{name}"
        assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
        assert labels["org.opencontainers.image.base.name"] == b.base
        if head:
            assert labels["org.opencontainers.image.revision"] == head
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", labels["org.opencontainers.image.created"])


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_agent_image_runs_criu_runc_and_pycriu(docker_client: docker.DockerClient,
                                               built: dict[str, images.Built]) -> None:
    tag = built["agent"].tag
    criu = run(docker_client, tag, "criu", "--version")
    assert re.search(r"^Version: 4\.\d+", criu, re.MULTILINE), criu
    runc = run(docker_client, tag, "runc", "--version")
    assert re.search(r"^runc version 1\.\d+", runc, re.MULTILINE), runc
    for tool in ("iptables-restore", "fusermount3"):
        assert run(docker_client, tag, "sh", "-c", f"command -v {tool}").strip(), tool
    imported = run(docker_client, tag, "python3", "-c",
                   "import pycriu, mosix, importlib.metadata as m; print(m.version('mosix'))")
    assert imported.strip() == images.project_version()
    config = docker_client.images.get(tag).attrs["Config"]
    assert config["Cmd"][:2] == ["python3", "/app/nodeagent/main.py"]
    assert config.get("User", "") in ("", "0", "root")


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_operator_image_runs_kopf_as_non_root(docker_client: docker.DockerClient,
                                              built: dict[str, images.Built]) -> None:
    tag = built["operator"].tag
    config = docker_client.images.get(tag).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["kopf", "run", "/app/operator/main.py", "--all-namespaces", "--peering=mosix",
                             "--liveness=http://0.0.0.0:8080/healthz"]
    assert run(docker_client, tag, "id", "-u").strip() == "10001"
    assert run(docker_client, tag, "kopf", "--version").startswith("kopf, version")
    imported = run(docker_client, tag, "python", "-c", "import mosix.api, kopf; print('ok')")
    assert imported.strip() == "ok"


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_an_unreachable_explicit_base_is_an_error(docker_client: docker.DockerClient) -> None:
    with pytest.raises(images.ImageError, match=re.escape("no-such-registry.invalid/debian:none")):
        images.resolve_base(docker_client, "no-such-registry.invalid/debian:none")


# --- without an engine ----------------------------------------------------------------------------------------------

def test_mirror_from_deb822_sources(tmp_path: pathlib.Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
                       "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\n"
                       "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert images.debian_mirror([sources]) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources(tmp_path: pathlib.Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text("# a comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n")
    assert images.debian_mirror([tmp_path / "missing.sources", sources]) == "http://mirror.example/debian"
    assert images.debian_mirror([tmp_path / "missing.sources"]) == images.FALLBACK_MIRROR


def test_build_context_holds_the_package_and_no_caches(tmp_path: pathlib.Path) -> None:
    ca = tmp_path / "site.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with tarfile.open(fileobj=io.BytesIO(images.context_tar(REPO, [ca]))) as tar:
        names = set(tar.getnames())
    assert {"pyproject.toml", "README.md", "mosix/__init__.py", "mosix/images.py", "operator", "nodeagent",
            "images/Dockerfile", "images/extra-ca/README",
            "images/extra-ca/host-0-site.crt"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith((".venv", "tests"))]


def test_the_dockerfile_takes_the_base_and_labels_each_image() -> None:
    text = (REPO / images.DOCKERFILE).read_text()
    assert text.count("ARG BASE=debian:trixie-slim") == 1 and "FROM ${BASE} AS python" in text
    stages = text.split("\nFROM ")
    [shared] = [s for s in stages if s.startswith("${BASE} AS python\n")]
    for label in ("version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in shared, label
    for name in images.NAMES:
        [stage] = [s for s in stages if s.startswith(f"python AS {name}\n")]
        for label in ("revision", "created", "title"):
            assert f"org.opencontainers.image.{label}=" in stage, (name, label)
        assert f'org.opencontainers.image.title="mosix-{name}"' in stage


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'none.sock'}")
    with pytest.raises(images.ImageError, match="no Docker engine reachable"):
        images.connect()
    assert images.main(["--only", "operator"]) == 1
