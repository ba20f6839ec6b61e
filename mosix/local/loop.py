"""The local cluster's control loop: one policy round every interval over the SQLite store."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import threading

import prometheus_client

from mosix import stopping
from mosix.api import meta
from mosix.client import client, local
from mosix.controller import collecting, plan, round

log = logging.getLogger("mosix.loop")


def record(events_path: pathlib.Path, events: list[plan.Event]) -> None:
    """Appends events as JSON lines (the local cluster's Kubernetes Events)."""
    if not events:
        return
    stamp = meta.now_rfc3339()
    with events_path.open("a", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps({"time": stamp, "job": e.job, "reason": e.reason, "message": e.message,
                                "type": "Warning" if e.warning else "Normal"}) + "\n")
            log.info("%s %s: %s", e.job, e.reason, e.message)


def serve(state_dir: pathlib.Path, interval: float, stop: threading.Event) -> None:
    api = client.Client(local.LocalStore(state_dir))
    events = state_dir / "events.jsonl"
    with collecting.BetweenRounds() as gcs:
        while not stop.is_set():
            try:
                outcome = round.run_round(api)
                record(events, outcome.plan.events)
            except Exception:  # one bad round must not end the loop; the next one retries
                log.exception("control round failed")
            gcs.after_round()
            stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosix.local.loop", description=__doc__)
    parser.add_argument("--state", type=pathlib.Path, default=None, help="state folder (default: $MOSIX_STATE)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--metrics-port", type=int, default=9340, help="Prometheus port on 127.0.0.1 (0: off)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = args.state or local.default_state_dir()
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    stopping.stop_on_signals(stop)
    log.info("control loop on %s, every %.1f s", state, args.interval)
    serve(state, args.interval, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
