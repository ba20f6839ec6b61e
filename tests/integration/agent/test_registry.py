"""Registry image references: a real registry (Debian's docker-registry) on 127.0.0.1, pulled with skopeo."""

from __future__ import annotations

import collections.abc
import pathlib
import shutil
import subprocess
import time
import urllib.request

import pytest

from mosix.agent import containers, errors, images, jobs, testimage
from tests.ports import free_port

REGISTRY = "/usr/bin/docker-registry"


@pytest.fixture
def registry(tmp_path: pathlib.Path) -> collections.abc.Iterator[str]:
    """A registry serving plain HTTP on 127.0.0.1:<free port>, its storage under tmp_path; yields host:port."""
    if not pathlib.Path(REGISTRY).exists() or shutil.which("skopeo") is None:
        pytest.skip("needs docker-registry and skopeo (hack/setup.sh installs them)")
    host = f"127.0.0.1:{free_port()}"
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\nhttp:\n  addr: {host}\n"
    )
    with open(tmp_path / "registry.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"registry did not start: {(tmp_path / 'registry.log').read_text()}") from None
                time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _push(cache: images.Cache, host: str, name: str) -> None:
    layout = cache.testload_layout()
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:{testimage.TAG}",
            f"docker://{host}/{name}",
        ],
        check=True,
        capture_output=True,
    )


@pytest.mark.root
def test_registry_image_is_pulled_unpacked_once_and_runs(
    registry: str,
    image_cache: images.Cache,
    make_agent: collections.abc.Callable[..., containers.Manager],
) -> None:
    _push(image_cache, registry, "mosix/testload:1")
    cache = images.Cache(image_cache.root, insecure_registries=frozenset({registry}))
    pulled = cache.resolve(f"{registry}/mosix/testload:1")
    layout = image_cache.testload_layout()
    assert pulled.digest == images.manifest_digest(layout, testimage.TAG)  # the same image, by digest
    assert pulled.rootfs == image_cache.resolve(testimage.REFERENCE).rootfs  # unpacked once, shared
    by_digest = cache.resolve(f"docker://{registry}/mosix/testload@{pulled.digest}")
    assert by_digest.rootfs == pulled.rootfs and by_digest.identity == pulled.digest

    agent = make_agent("n1", cache)
    agent.run(
        jobs.Job(
            name="fromreg", args=("sh", "-c", "echo hello from the registry"), image=f"{registry}/mosix/testload:1"
        )
    )
    assert agent.wait("fromreg", timeout=60) == 0
    assert agent.stdout_path("fromreg").read_text() == "hello from the registry\n"


@pytest.mark.root
def test_registry_failures_name_the_registry_and_the_reason(registry: str, image_cache: images.Cache) -> None:
    _push(image_cache, registry, "mosix/testload:1")
    secure = images.Cache(image_cache.root)  # not told this registry speaks plain HTTP
    with pytest.raises(errors.ImageError, match=rf"pulling {registry}/mosix/testload:1 from {registry} failed: ."):
        secure.resolve(f"{registry}/mosix/testload:1")
    insecure = images.Cache(image_cache.root, insecure_registries=frozenset({registry}))
    with pytest.raises(errors.ImageError, match=r"manifest unknown|not found"):
        insecure.resolve(f"{registry}/mosix/testload:no-such-tag")


def test_malformed_references_are_refused_before_any_pull(tmp_path: pathlib.Path) -> None:
    cache = images.Cache(tmp_path)
    for bad in ("Upper/Case:tag", "repo:tag with space", "-leading-dash", "repo@sha256:short"):
        with pytest.raises(errors.ImageError, match="unsupported image reference"):
            cache.resolve(bad)
    assert not (tmp_path / "layouts").exists()


def test_registry_host_follows_docker_reference_rules() -> None:
    assert images.registry_host("busybox") == "docker.io"
    assert images.registry_host("library/busybox:1") == "docker.io"
    assert images.registry_host("127.0.0.1:5000/mosix/testload:1") == "127.0.0.1:5000"
    assert images.registry_host("localhost/x") == "localhost"
    assert images.registry_host("ghcr.io/org/img@sha256:" + "0" * 64) == "ghcr.io"
