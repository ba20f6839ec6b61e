"""The agents' user API (mosix/agent/userapi.py): how fast a user reads a job's output through it, against
reading the same file on the home node (from the page cache, as the agent does), and what one poll costs
with the API server's answers cached, and uncached (a TokenReview and a SubjectAccessReview); and how long a
line takes from the home's store to a follower (`mosix logs -f`, foreground mosrun), by a request the agent
holds until output arrives (?wait) against polling once a second (what followers did before).

    .venv/bin/python bench/user-io.py --kubeconfig /tmp/logsauth-api/kubeconfig [--mib 64] [--polls 200]

Needs a real API server (shared/k8s/apiserver up DIR) whose kubeconfig user may create TokenReviews and
SubjectAccessReviews and read mosixjobs/log (its admin). The user API runs in this process on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import pathlib
import random
import ssl
import statistics
import sys
import tempfile
import threading
import time
import typing

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mosix.agent import delegated, homeio, tls, userapi
from mosix.client import kube
from tests import ports

KEY = "bench/job1"
PATH = "/namespaces/bench/mosixjobs/job1/log"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", default=os.environ.get("MOSIX_E2E_KUBECONFIG"), required=False)
    p.add_argument("--mib", type=int, default=64, help="output size to read (MiB)")
    p.add_argument("--polls", type=int, default=200, help="empty polls to time")
    p.add_argument("--lines", type=int, default=20, help="lines to follow, each way")
    args = p.parse_args()
    if not args.kubeconfig:
        p.error("--kubeconfig: the API server's kubeconfig (or set MOSIX_E2E_KUBECONFIG)")
    token = yaml.safe_load(pathlib.Path(args.kubeconfig).read_text())["users"][0]["user"]["token"]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = pathlib.Path(tmp)
        ca = tls.make_ca(root / "ca")
        ident = tls.issue(ca, root / "agent", "node1", ("127.0.0.1",))
        home = homeio.HomeOutput(root / "home")
        block = b"".join(f"{i}\n".encode() for i in range(100000))[: 1 << 20]
        for i in range(args.mib):
            home.append(KEY, "stdout", i * len(block), block)
        size = home.size(KEY, "stdout")
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        port = ports.free_port()
        reviewer = delegated.Reviewer(kube.connect(args.kubeconfig))
        asyncio.run_coroutine_threadsafe(userapi.serve(
            "127.0.0.1", port, userapi.server_context(ident, None), home=home, reviewer=reviewer,
            is_home=lambda ns, name: True), loop).result(30)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca.ca)))
        headers = {"Authorization": f"Bearer {token}"}

        def get(offset: int, wait: float = 0, key: str = KEY) -> bytes:
            conn.request("GET", f"{PATH.replace('job1', key.partition('/')[2])}?stream=stdout&offset={offset}"
                                f"&wait={wait}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body)
            return body

        started = time.perf_counter()
        get(size)  # first request: TokenReview + SubjectAccessReview
        first_ms = (time.perf_counter() - started) * 1000
        polls = []
        for _ in range(args.polls):
            started = time.perf_counter()
            get(size)
            polls.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        got = 0
        while got < size:
            got += len(get(got))
        api_s = time.perf_counter() - started
        delays = {"held": follow(home, get, args.lines, held=True), "poll": follow(home, get, args.lines, held=False)}
        path = home.path(KEY, "stdout")
        started = time.perf_counter()
        with path.open("rb") as f:
            while f.read(1 << 20):
                pass
        disk_s = time.perf_counter() - started
    print(f"output {args.mib} MiB through the user API: {args.mib / api_s:.0f} MiB/s; the same file read here "
          f"(page cache, as the agent reads it): "
          f"{args.mib / disk_s:.0f} MiB/s; ratio {disk_s / api_s:.2f}")
    print(f"one poll (empty answer), reviews cached: median {statistics.median(polls):.2f} ms "
          f"(p90 {sorted(polls)[int(len(polls) * 0.9)]:.2f} ms, {args.polls} polls); first request with a "
          f"TokenReview and a SubjectAccessReview: {first_ms:.1f} ms ({first_ms / statistics.median(polls):.0f}x)")
    for how, what in (("held", "held request (?wait=5)"), ("poll", "a poll every second")):
        ms = sorted(d * 1000 for d in delays[how])
        print(f"a line from home to a follower, {what}: median {statistics.median(ms):.1f} ms, "
              f"max {ms[-1]:.1f} ms ({args.lines} lines)")
    held_ms, poll_ms = statistics.median(delays["held"]) * 1000, statistics.median(delays["poll"]) * 1000
    print(f"held / poll: {held_ms / poll_ms:.3f}")
    return 0


def follow(home: homeio.HomeOutput, get: typing.Callable[[int, float, str], bytes], lines: int,
           held: bool) -> list[float]:
    """Seconds from each line's arrival at home to the follower's having it; a line every 0.2-0.5 s."""
    key = f"bench/follow-{'held' if held else 'poll'}"
    arrived: list[float] = []

    def writer() -> None:
        rng = random.Random(1)
        for i in range(lines):
            time.sleep(rng.uniform(0.2, 0.5))
            line = f"{i}\n".encode()
            arrived.append(time.perf_counter())
            home.append(key, "stdout", home.size(key, "stdout"), line)

    thread = threading.Thread(target=writer)
    thread.start()
    delays: list[float] = []
    offset = 0
    while len(delays) < lines:
        data = get(offset, 5.0 if held else 0, key)
        now = time.perf_counter()
        for _ in range(data.count(b"\n")):
            delays.append(now - arrived[len(delays)])
        offset += len(data)
        if not held:
            time.sleep(1.0)
    thread.join()
    return delays


if __name__ == "__main__":
    sys.exit(main())
