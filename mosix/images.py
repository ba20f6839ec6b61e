"""Builds the mosix container images, ``mosix/operator`` and ``mosix/agent``, with the Docker engine.

``mosix-images [--base IMAGE | --local-base] [--mirror URL] [--tag TAG] [--prefix mosix] [--only NAME] [--no-cache]``

``images/Dockerfile`` has a final stage per image (``--target operator``, ``--target agent``) over
shared ones (Python, the site's CAs, the package's venv), and takes ``ARG BASE``
(default ``debian:trixie-slim``). The base is chosen in this order: ``--base`` if given; else
``debian:trixie-slim`` if the engine has it or can pull it; else ``local/debian:trixie``, made here
when missing with ``debootstrap --variant=minbase trixie DIR MIRROR`` + ``docker import`` (where no
registry is reachable; MIRROR is the Debian mirror of ``/etc/apt/sources.list.d/debian.sources``).
The build context holds only ``pyproject.toml``, ``README.md``, ``mosix/``, ``operator/`` and
``nodeagent/`` (the Dockerfile ``pip install``s the package from it). Images are tagged
``PREFIX/NAME:TAG`` (TAG defaults to the project's version, which the chart's appVersion follows)
and carry OCI labels: version, revision and created (the git commit and its time), title, licenses.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable

import docker
import docker.errors

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = ("operator", "agent")  # the final stages of DOCKERFILE; the classic builder builds the stages before one too
DOCKERFILE = "images/Dockerfile"
DEFAULT_BASE = "debian:trixie-slim"
LOCAL_BASE = "local/debian:trixie"
CONTEXT = ("pyproject.toml", "README.md", "mosix", "operator", "nodeagent")
DEBIAN_SOURCES = (pathlib.Path("/etc/apt/sources.list.d/debian.sources"), pathlib.Path("/etc/apt/sources.list"))
FALLBACK_MIRROR = "http://deb.debian.org/debian"
HOST_EXTRA_CA = pathlib.Path("/usr/local/share/ca-certificates")
SKIPPED = re.compile(r"(^|/)(__pycache__|\.mypy_cache|\.pytest_cache|\.ruff_cache|[^/]*\.egg-info)(/|$)|\.py[co]$")

Say = Callable[[str], None]


class ImageError(Exception):
    """An image could not be made; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Built:
    """One image built: its tag, id, the base it was built from, and how long the build took."""

    name: str
    tag: str
    image_id: str
    base: str
    seconds: float


def _quiet(_: str) -> None:
    pass


def project_version(root: pathlib.Path = REPO) -> str:
    """The version in pyproject.toml (the chart's appVersion follows it)."""
    with open(root / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _git(root: pathlib.Path, *args: str) -> str | None:
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def oci_build_args(root: pathlib.Path = REPO) -> dict[str, str]:
    """VERSION, REVISION and CREATED for the OCI labels: the project's version, HEAD and its commit time.

    CREATED is the commit's time, not the build's, so rebuilding the same commit is fully cached."""
    return {
        "VERSION": project_version(root),
        "REVISION": _git(root, "rev-parse", "HEAD") or "unknown",
        "CREATED": _git(root, "log", "-1", "--format=%cI") or "1970-01-01T00:00:00Z",
    }


def debian_mirror(sources: Iterable[pathlib.Path] = DEBIAN_SOURCES) -> str:
    """The first Debian archive mirror configured for apt (deb822 or one-line format), not the security one."""
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                uris = fields.get("URIs", "").split()
                if "deb" in fields.get("Types", "").split() and uris and "security" not in fields.get("Suites", ""):
                    return uris[0].rstrip("/")
        else:
            for line in text.splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and "security" not in words[2]:
                    url = next(w for w in words[1:] if not w.startswith("["))
                    return url.rstrip("/")
    return FALLBACK_MIRROR


def extra_ca_certs(folder: pathlib.Path | None = HOST_EXTRA_CA) -> list[pathlib.Path]:
    """The locally added CA certificates (Debian keeps them as *.crt under /usr/local/share/ca-certificates).

    Where HTTPS goes through an intercepting proxy, its CA is among them; the build trusts them for its
    downloads (images/extra-ca/README)."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.crt") if p.is_file())


def context_tar(root: pathlib.Path = REPO, extra_ca: Iterable[pathlib.Path] = ()) -> bytes:
    """The build context as a tar: CONTEXT, images/Dockerfile and images/extra-ca/ (plus the extra CA
    certificates given), without caches or bytecode."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if SKIPPED.search(info.name):
                return None
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        for name in CONTEXT:
            path = root / name
            if not path.exists():
                raise ImageError(f"build context: {path} is missing")
            tar.add(path, arcname=name, filter=keep)
        tar.add(root / DOCKERFILE, arcname=DOCKERFILE, filter=keep)
        tar.add(root / "images" / "extra-ca", arcname="images/extra-ca", filter=keep)
        for i, cert in enumerate(extra_ca):
            tar.add(cert, arcname=f"images/extra-ca/host-{i}-{cert.name}", filter=keep)
    return buf.getvalue()


def connect() -> docker.DockerClient:
    """A client of the engine named by DOCKER_HOST (default: the local socket); ImageError if unreachable."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as e:
        raise ImageError(f"no Docker engine reachable ({os.environ.get('DOCKER_HOST') or 'local socket'}): {e}") from e
    return client


def has_image(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def bootstrap_base(client: docker.DockerClient, mirror: str, ref: str = LOCAL_BASE, say: Say = _quiet) -> str:
    """Makes ref from ``debootstrap --variant=minbase trixie`` + ``docker import``; returns its image id."""
    if shutil.which("debootstrap") is None:
        raise ImageError(f"no registry base image and no debootstrap to make {ref} (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ImageError(f"debootstrap needs root to make {ref}")
    repository, _, tag = ref.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="mosix-rootfs-") as tmp:
        rootfs = pathlib.Path(tmp) / "rootfs"
        say(f"images: debootstrap --variant=minbase trixie {rootfs} {mirror}")
        start = time.monotonic()
        done = subprocess.run(["debootstrap", "--variant=minbase", "trixie", str(rootfs), mirror],
                              capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ImageError(f"debootstrap trixie from {mirror} failed:\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = pathlib.Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        say(f"images: debootstrap took {time.monotonic() - start:.1f} s; docker import as {ref}")
        with open(tarball, "rb") as f:
            client.api.import_image_from_data(f, repository=repository, tag=tag)
    return str(client.images.get(ref).id)


def resolve_base(client: docker.DockerClient, base: str | None = None, *, local_base: bool = False,
                 mirror: str | None = None, say: Say = _quiet) -> str:
    """The base image to build from, pulled or made here if needed (see the module's docstring)."""
    wanted = LOCAL_BASE if local_base else (base or DEFAULT_BASE)
    if has_image(client, wanted):
        return wanted
    if wanted != LOCAL_BASE:
        repository, _, tag = wanted.rpartition(":") if ":" in wanted.rsplit("/", 1)[-1] else (wanted, "", "latest")
        try:
            say(f"images: pulling {wanted}")
            client.images.pull(repository, tag=tag)
            return wanted
        except docker.errors.APIError as e:
            if base is not None:
                raise ImageError(f"base image {base} is neither local nor pullable: {e.explanation or e}") from e
            say(f"images: no registry reachable ({e.explanation or e}); using {LOCAL_BASE}")
    if not has_image(client, LOCAL_BASE):
        bootstrap_base(client, mirror or debian_mirror(), LOCAL_BASE, say)
    return LOCAL_BASE


def build(client: docker.DockerClient, name: str, *, base: str, tag: str, prefix: str = "mosix",
          nocache: bool = False, context: bytes | None = None, say: Say = _quiet) -> Built:
    """Builds the stage NAME of images/Dockerfile from base as PREFIX/NAME:TAG; ImageError with the log's tail
    on failure."""
    if name not in NAMES:
        raise ImageError(f"unknown image {name!r} (one of {', '.join(NAMES)})")
    ref = f"{prefix}/{name}:{tag}"
    say(f"images: building {ref} from {base}")
    start = time.monotonic()
    log: list[str] = []
    image_id: str | None = None
    stream = client.api.build(
        fileobj=io.BytesIO(context if context is not None else context_tar()), custom_context=True,
        dockerfile=DOCKERFILE, target=name, tag=ref, buildargs={"BASE": base, **oci_build_args()},
        rm=True, forcerm=True, pull=False, nocache=nocache, decode=True)
    for chunk in stream:
        if "error" in chunk:
            tail = "".join(log[-30:])
            raise ImageError(f"building {ref} failed: {str(chunk['error']).strip()}\n{tail}")
        if "stream" in chunk:
            line = str(chunk["stream"])
            log.append(line)
            if line.startswith("Step "):
                say(f"images: {name}: {line.strip()}")
        aux = chunk.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            image_id = str(aux["ID"])
    if image_id is None:
        image_id = str(client.images.get(ref).id)
    return Built(name=name, tag=ref, image_id=image_id, base=base, seconds=time.monotonic() - start)


def build_all(client: docker.DockerClient, *, base: str | None = None, local_base: bool = False,
              mirror: str | None = None, tag: str | None = None, prefix: str = "mosix",
              names: Iterable[str] = NAMES, nocache: bool = False, extra_ca: Iterable[pathlib.Path] = (),
              say: Say = _quiet) -> list[Built]:
    """Resolves the base (making it if needed), then builds each named image from one build context."""
    chosen = resolve_base(client, base, local_base=local_base, mirror=mirror, say=say)
    context = context_tar(REPO, extra_ca)
    return [build(client, name, base=chosen, tag=tag or project_version(), prefix=prefix, nocache=nocache,
                  context=context, say=say) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mosix-images", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--base", help=f"base image (default: {DEFAULT_BASE}, else {LOCAL_BASE} made here)")
    where.add_argument("--local-base", action="store_true",
                       help=f"build from {LOCAL_BASE}, made with debootstrap + docker import if missing")
    parser.add_argument("--mirror", help="Debian mirror for debootstrap (default: the one apt uses here)")
    parser.add_argument("--tag", help="image tag (default: the project's version, the chart's appVersion)")
    parser.add_argument("--prefix", default="mosix", help="repository prefix: PREFIX/operator, PREFIX/agent")
    parser.add_argument("--only", choices=NAMES, action="append", help="build only this image (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="build every step anew")
    parser.add_argument("--extra-ca", type=pathlib.Path, default=HOST_EXTRA_CA, metavar="DIR",
                        help="trust the *.crt in DIR during the build (default: %(default)s, the host's own CAs)")
    parser.add_argument("--no-extra-ca", action="store_true", help="trust no extra CA during the build")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        built = build_all(connect(), base=args.base, local_base=args.local_base, mirror=args.mirror,
                          tag=args.tag, prefix=args.prefix, names=args.only or NAMES, nocache=args.no_cache,
                          extra_ca=[] if args.no_extra_ca else extra_ca_certs(args.extra_ca),
                          say=_quiet if args.quiet else say)
    except ImageError as e:
        print(f"mosix-images: {e}", file=sys.stderr)
        return 1
    for b in built:
        print(f"{b.tag}\t{b.image_id}\tfrom {b.base}\t{b.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
