"""Build the local test image `mosix/testload:local` from busybox-static, so no registry is needed."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

from mosix.agent import errors

REFERENCE = "mosix/testload:local"
TAG = "local"
BUSYBOX = pathlib.Path("/bin/busybox")
RECIPE_VERSION = "2"

TESTLOAD_SOURCE = pathlib.Path(__file__).with_name("testload.c")  # CPU-bound like MOSIX's testload

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def recipe_digest(busybox: pathlib.Path = BUSYBOX) -> str:
    """Hash of everything the image is made of: the same inputs give the same cache entry."""
    h = hashlib.sha256()
    h.update(RECIPE_VERSION.encode())
    h.update(busybox.read_bytes())
    h.update(TESTLOAD_SOURCE.read_bytes())
    h.update(PASSWD.encode())
    h.update(GROUP.encode())
    return h.hexdigest()


def populate(rootfs: pathlib.Path, busybox: pathlib.Path = BUSYBOX) -> None:
    """Fill an empty directory with busybox, its applet links and testload."""
    if not busybox.exists():
        raise errors.ImageError(f"{busybox} is missing: install busybox-static")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "proc", "sys", "dev", "root", "tmp"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "root").chmod(0o700)
    shutil.copy2(busybox, rootfs / "bin/busybox")
    (rootfs / "bin/busybox").chmod(0o755)
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    for applet in listing.split():
        link = rootfs / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    compile_testload(rootfs / "usr/local/bin/testload")
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)


def compile_testload(target: pathlib.Path) -> None:
    """Builds testload as a static binary: the image has no libc, only busybox."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise errors.ImageError("no C compiler to build testload: install gcc and libc6-dev")
    proc = subprocess.run([cc, "-O2", "-static", "-o", str(target), str(TESTLOAD_SOURCE)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise errors.ImageError(f"building testload failed: {proc.stderr.strip()}")
    target.chmod(0o755)


def build_layout(layout: pathlib.Path, busybox: pathlib.Path = BUSYBOX) -> None:
    """Write the test image as an OCI image layout tagged `local` (umoci init/new/unpack/repack)."""
    layout.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layout.parent, prefix=".build-") as tmp:
        staging = pathlib.Path(tmp) / "layout"
        bundle = pathlib.Path(tmp) / "bundle"
        _umoci("init", "--layout", str(staging))
        _umoci("new", "--image", f"{staging}:{TAG}")
        _umoci("unpack", "--image", f"{staging}:{TAG}", str(bundle))
        populate(bundle / "rootfs", busybox)
        _umoci("repack", "--image", f"{staging}:{TAG}", str(bundle))
        _umoci("config", "--image", f"{staging}:{TAG}", "--config.cmd", "testload",
               "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        os.rename(staging, layout)


def _umoci(*args: str) -> None:
    try:
        proc = subprocess.run(["umoci", *args], capture_output=True, text=True, check=False)
    except OSError as e:
        raise errors.ImageError(f"umoci could not run: {e}") from e
    if proc.returncode != 0:
        raise errors.ImageError(f"umoci {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
