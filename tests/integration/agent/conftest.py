"""Fixtures for the agent's integration tests: real runc, CRIU and overlayfs, as root.

Each test gets its own agent state directory and runc root under its tmp_path; the image cache
is shared by the session (it is content-addressed). Every container is killed and every overlay
unmounted at teardown, failed test or not.
"""

from __future__ import annotations

import collections.abc
import os
import pathlib
import shutil
import time

import pytest

from mosix.agent import containers, images, overlay, tls

NEEDED_BINARIES = ("runc", "criu", "umoci", "iptables-restore", "busybox")


def missing_requirements() -> list[str]:
    """What this machine lacks to run the agent for real."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    missing += [b for b in NEEDED_BINARIES if shutil.which(b) is None]
    if not pathlib.Path("/bin/busybox").exists():
        missing.append("/bin/busybox (busybox-static)")
    return missing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the root tests, naming what is missing, when this is not a root machine with runc and CRIU."""
    missing = missing_requirements()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs {', '.join(missing)}")
    here = pathlib.Path(__file__).parent
    for item in items:
        if "root" in item.keywords and item.path.is_relative_to(here):  # the hook sees every test
            item.add_marker(skip)


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> images.Cache:
    """One image cache for the session."""
    return images.Cache(tmp_path_factory.mktemp("images"))


@pytest.fixture
def ca(tmp_path: pathlib.Path) -> tls.Identity:
    """A cluster CA of the test's own, for agents that talk mutual TLS."""
    return tls.make_ca(tmp_path / "ca")


MakeAgent = collections.abc.Callable[..., containers.Manager]


@pytest.fixture
def make_agent(tmp_path: pathlib.Path, image_cache: images.Cache) -> collections.abc.Iterator[MakeAgent]:
    """Build agents (container managers) with their own state dirs; all cleaned up afterwards."""
    made: list[containers.Manager] = []

    def make(node: str, cache: images.Cache | None = None) -> containers.Manager:
        m = containers.Manager(tmp_path / node, cache or image_cache, node=f"test-{os.getpid()}-{node}")
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
        assert not m.runtime.list(), "containers left running"
        for d in (m.state_dir / "jobs").glob("*/rootfs"):
            assert not overlay.is_mounted(d), f"{d} still mounted"


@pytest.fixture
def agent(make_agent: collections.abc.Callable[[str], containers.Manager]) -> containers.Manager:
    """One agent."""
    return make_agent("n1")


WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
CheckCounts = collections.abc.Callable[[list[str], str], None]


@pytest.fixture
def wait_lines() -> WaitLines:
    """wait_lines(path, n): wait until a file has at least n complete lines (fails if it never does)."""

    def wait(path: pathlib.Path, count: int) -> list[str]:
        deadline = time.monotonic() + 60
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"{path} has {len(lines)} lines, wanted {count}")
            time.sleep(0.05)

    return wait


@pytest.fixture
def check_counts() -> CheckCounts:
    """check_counts(lines, prefix): every number from 0 up, once, in order."""

    def check(lines: list[str], prefix: str = "") -> None:
        numbers = [int(line.removeprefix(prefix)) for line in lines]
        assert numbers == list(range(len(numbers))), f"gap or duplicate in {numbers}"

    return check
