"""The image cache: OCI images unpacked once into root filesystems keyed by their manifest digest.

Job containers use a cached rootfs read-only as the lower layer of their overlay, so many jobs
(and their restores) share one unpacked copy. Several agents on one machine may share the cache:
builds and unpacks take a file lock and publish with an atomic rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from mosix.agent import errors, testimage

DEFAULT_ROOT = pathlib.Path("/var/lib/mosix/images")


@dataclasses.dataclass(frozen=True)
class Image:
    """An unpacked image: what the reference resolved to and where its rootfs is."""

    reference: str
    digest: str  # "sha256:<hex>" of the manifest
    rootfs: pathlib.Path
    identity: str  # what must match for a checkpoint to restore on it (see `resolve`)


class Cache:
    """A content-addressed store of unpacked images under one directory."""

    def __init__(self, root: pathlib.Path = DEFAULT_ROOT, insecure_registries: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.insecure_registries = insecure_registries  # hosts[:port] reached over plain HTTP or unverified TLS

    def resolve(self, reference: str) -> Image:
        """Return the unpacked image for a reference, building or unpacking it the first time.

        References: `mosix/testload:local` (built here from busybox-static),
        `oci:<layout dir>[:<tag>]` (an OCI image layout on disk; tag defaults to `latest`), or a
        registry reference (`[docker://]host[:port]/repo[:tag|@digest]`, pulled with skopeo).
        The identity is the manifest digest, except for the test image, which every node builds
        itself (umoci stamps times, so manifests differ): its identity is its recipe's digest.
        """
        if reference == testimage.REFERENCE:
            layout, tag = self.testload_layout(), testimage.TAG
            identity = f"testload-recipe:{testimage.recipe_digest()}"
        elif reference.startswith("oci:"):
            layout, tag = _split_layout(reference[len("oci:") :])
            identity = ""
        else:
            layout, tag = self.pull(reference)
            identity = ""
        digest = manifest_digest(layout, tag)
        return Image(
            reference=reference, digest=digest, rootfs=self.unpack(layout, tag, digest), identity=identity or digest
        )

    def testload_layout(self) -> pathlib.Path:
        """The test image's OCI layout, built once per recipe (busybox binary + script)."""
        layout = self.root / "layouts" / f"testload-{testimage.recipe_digest()[:32]}"
        if layout.exists():
            return layout
        with self._locked():
            if not layout.exists():
                testimage.build_layout(layout)
        return layout

    def pull(self, reference: str) -> tuple[pathlib.Path, str]:
        """Copy a registry image into the cache's registry layout with skopeo; return (layout, tag).

        skopeo skips blobs the layout already holds, so pulling a known image again costs one manifest
        fetch; a tag is re-resolved every time (it may have moved), a digest names one image forever.
        Credentials and trust come from the standard containers files (auth.json, registries.conf,
        /etc/containers/certs.d) as for podman and CRI-O.
        """
        ref = reference.removeprefix("docker://")
        if not REFERENCE.fullmatch(ref):
            raise errors.ImageError(
                f"unsupported image reference {reference!r}: use {testimage.REFERENCE}, "
                "oci:<layout>[:<tag>] or [docker://]host[:port]/repo[:tag|@digest]"
            )
        layout = self.root / "layouts" / "registry"
        tag = "ref-" + hashlib.sha256(ref.encode()).hexdigest()[:40]
        cmd = ["skopeo", "copy", "--quiet"]
        if registry_host(ref) in self.insecure_registries:
            cmd.append("--src-tls-verify=false")
        cmd += [f"docker://{ref}", f"oci:{layout}:{tag}"]
        with self._locked():
            layout.parent.mkdir(parents=True, exist_ok=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=PULL_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise errors.ImageError(f"pulling {ref}: skopeo could not run: {e}") from e
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise errors.ImageError(f"pulling {ref} from {registry_host(ref)} failed: {why[0]}")
        return layout, tag

    def unpack(self, layout: pathlib.Path, tag: str, digest: str) -> pathlib.Path:
        """Unpack a layout's tag with umoci into rootfs/<digest>/, once."""
        target = self.root / "rootfs" / digest.replace(":", "-")
        rootfs = target / "rootfs"
        if rootfs.exists():
            return rootfs
        with self._locked():
            if rootfs.exists():
                return rootfs
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
                bundle = pathlib.Path(tmp) / "bundle"
                try:
                    proc = subprocess.run(
                        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                except OSError as e:
                    raise errors.ImageError(f"umoci could not run: {e}") from e
                if proc.returncode != 0:
                    raise errors.ImageError(f"umoci unpack {layout}:{tag} failed: {proc.stderr.strip()}")
                if target.exists():
                    shutil.rmtree(target)
                os.rename(bundle, target)
        return rootfs

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


PULL_TIMEOUT = 600.0
# A Docker reference: optional host[:port]/, lower-case path components, optional :tag and @digest.
REFERENCE = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def registry_host(ref: str) -> str:
    """The registry a reference names: its first component when that looks like a host, else Docker Hub."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def manifest_digest(layout: pathlib.Path, tag: str) -> str:
    """The manifest digest a tag names in an OCI layout's index.json."""
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise errors.ImageError(f"{layout} is not an OCI image layout: {e}") from e
    for m in index.get("manifests", []):
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return str(m["digest"])
    raise errors.ImageError(f"{layout} has no tag {tag!r}")


def _split_layout(spec: str) -> tuple[pathlib.Path, str]:
    path, sep, tag = spec.rpartition(":")
    if not sep or "/" in tag:
        return pathlib.Path(spec), "latest"
    return pathlib.Path(path), tag
