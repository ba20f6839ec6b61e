"""The Kopf handlers: when to act. What to do is in `control`, run in worker threads (the client is sync).

- startup: settings, metrics, credentials, the MosixCluster `default`;
- a daemon on that MosixCluster: one control round every spec.balancing.intervalSeconds, while this
  operator leads its peering (Kopf pauses daemons of operators that do not);
- MosixJob created: first status and an Event; deleted: held by a finalizer until its agent cleaned up.
"""

from __future__ import annotations

import asyncio
import typing

import kopf
import pydantic
import urllib3

from mosix.api import cluster, job, meta
from mosix.client import client, kube, store
from mosix.controller import collecting
from mosix.controller.operator import control, credentials, runtime

JOBS = (meta.GROUP, meta.VERSION, job.MosixJob.PLURAL)
CLUSTERS = (meta.GROUP, meta.VERSION, cluster.MosixCluster.PLURAL)
UNREACHABLE = (store.StoreError, urllib3.exceptions.HTTPError, OSError)


def post(notices: list[control.Notice]) -> None:
    """Queues Kubernetes Events; Kopf posts them in the background."""
    for n in notices:
        about = kopf.Body(typing.cast(kopf.RawBody, n.body))
        if n.warning:
            kopf.warn(about, reason=n.reason, message=n.message)
        else:
            kopf.info(about, reason=n.reason, message=n.message)


@kopf.on.login()
async def login(**_: typing.Any) -> kopf.ConnectionInfo:
    """Kopf's credentials, from the same source as our store's."""
    return credentials.connection_info(await asyncio.to_thread(credentials.configuration))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: typing.Any) -> None:
    """Settings, our client, the MosixCluster `default` (created with MOSIX's defaults if missing), metrics."""
    runtime.configure(settings)
    try:
        connection = credentials.api_client(await asyncio.to_thread(credentials.configuration))
    except kopf.LoginError as e:  # nothing to run against: say so and stop
        raise kopf.PermanentError(str(e)) from e
    api = client.Client(kube.KubeStore(namespace=kube.ALL_NAMESPACES, api_client=connection))
    try:
        if await asyncio.to_thread(control.ensure_cluster, api):
            logger.info("created MosixCluster %s with MOSIX's defaults", cluster.DEFAULT_NAME)
    except UNREACHABLE as e:
        credentials.close(connection)
        raise kopf.TemporaryError(f"cannot read or create MosixCluster {cluster.DEFAULT_NAME}: {e}", delay=5) from e
    memo[runtime.KEY] = runtime.Runtime(api=api, kube=connection, leader=runtime.identity(),
                                        metrics=runtime.start_metrics())


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, logger: kopf.Logger, **_: typing.Any) -> None:
    """Takes Kopf's finalizer off the MosixCluster (the daemon it guards stops with us), then frees the
    metrics port and the API connections (tests and restarts reuse the process)."""
    found = memo.get(runtime.KEY)
    if isinstance(found, runtime.Runtime):
        try:
            await asyncio.to_thread(control.release_cluster, found.api, runtime.FINALIZER)
        except UNREACHABLE as e:  # an admin may remove it by hand; say so
            logger.warning("finalizer %s left on MosixCluster %s: %s", runtime.FINALIZER, cluster.DEFAULT_NAME, e)
        await asyncio.to_thread(runtime.stop, found)


def _is_default(name: str | None, **_: typing.Any) -> bool:
    return name == cluster.DEFAULT_NAME


def interval(spec: kopf.Spec) -> float:
    """spec.balancing.intervalSeconds as it is now (a daemon's spec is live); the default if malformed."""
    try:
        return cluster.MosixClusterSpec.model_validate(dict(spec)).balancing.interval_seconds
    except pydantic.ValidationError:
        return cluster.BalancingPolicy().interval_seconds


@kopf.daemon(*CLUSTERS, when=_is_default, cancellation_timeout=10.0)
async def control_loop(stopped: kopf.DaemonStopped, spec: kopf.Spec, memo: kopf.Memo, logger: kopf.Logger,
                       **_: typing.Any) -> None:
    """Snapshot → policy → patch, like `mosix.local.loop`, plus Events and the cluster's status."""
    rt = runtime.of(memo)
    with collecting.BetweenRounds() as gcs:  # while this operator leads: Kopf stops the daemon of one that does not
        while not stopped:
            try:
                report = await asyncio.to_thread(control.control_round, rt.api, rt.leader)
            except Exception:  # one bad round must not end the loop; the next one retries
                logger.exception("control round failed")
            else:
                post(report.notices)
                for conflict in report.conflicts:
                    logger.info("not written, next round retries: %s", conflict)
            gcs.after_round()
            await stopped.wait(interval(spec))


@kopf.on.create(*JOBS)
async def submitted(namespace: str | None, name: str | None, memo: kopf.Memo, **_: typing.Any) -> None:
    """A new job: its first status, if no round wrote one first, and an Event Submitted or Queued."""
    rt = runtime.of(memo)
    try:
        notice = await asyncio.to_thread(control.admit, rt.api, control.key(namespace, name))
    except UNREACHABLE as e:
        raise kopf.TemporaryError(f"first status not written: {e}", delay=1) from e
    if notice is not None:
        post([notice])


@kopf.on.delete(*JOBS)
async def deleting(body: kopf.Body, retry: int, memo: kopf.Memo, **_: typing.Any) -> None:
    """Holds a placed, unfinished job until its node's agent reports Cleaned, or its node is dead or gone."""
    rt = runtime.of(memo)
    try:
        wait = await asyncio.to_thread(control.release, rt.api, body)
    except UNREACHABLE as e:
        raise kopf.TemporaryError(f"cannot check the job's node: {e}", delay=2) from e
    if wait is None:
        return
    if retry == 0:
        kopf.info(body, reason="Stopping", message=wait)
    raise kopf.TemporaryError(wait, delay=2)

