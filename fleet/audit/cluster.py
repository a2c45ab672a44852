"""`--scheduler ADDRESS`: a fleet's hosts in shards on Dask workers (dask.distributed), merged
as if one process had run them.

Shards follow a host var (`--shard-by`, default `fleet_site`): a worker started with the
resource `fleet_site:eu-west=1` runs only the shards of hosts whose `fleet_site` is `eu-west`,
so a worker placed in a region or beside its bastion audits only that region. Hosts whose site
no worker serves (or that have none) go to the workers that serve no site. The run's settings,
endpoints and hosts travel with each shard (the worker needs the same fleet version, and the
key and known_hosts files at the paths the controller resolved); on the worker each shard
runs in a forked child process, away from the worker's own threads; results come back in the
hosts' order.

A worker that dies mid-shard: Dask re-runs the shard on another worker that may take it (an
audit only reads, so a re-run is safe) until its `allowed-failures`; past that, or when no
worker that may take the shard is left, its hosts are `error: worker lost ...`, never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import fleet
from fleet.audit.procs import ShardRun, deal, run_in_procs
from fleet.config.inventory import Host
from fleet.errors import UsageError
from fleet.transport.fanout import ProgressFactory

R = TypeVar("R")

# How long a shard may wait with no worker able to take it (a nanny restarting a killed
# worker takes a few seconds) before its hosts are reported lost.
NO_WORKER_GRACE_S = 10.0


@dataclass(frozen=True)
class WorkerInfo:
    address: str
    resources: Mapping[str, float]


@dataclass(frozen=True)
class Shard:
    hosts: tuple[int, ...]  # indexes into the run's hosts
    label: str  # "fleet_site=eu-west", or "any site": for keys and messages
    resource: str | None  # only workers holding this resource may run it
    workers: tuple[str, ...] | None  # else only these addresses (None: any worker)


def site_resource(var: str, value: str) -> str:
    """The Dask resource a worker declares to serve a site: `dask worker --resources
    'fleet_site:eu-west=1'`."""
    return f"{var}:{value}"


def site_of(host: Host, var: str) -> str | None:
    value = host.vars.get(var)
    return None if value is None or str(value) == "" else str(value)


def plan_shards(
    hosts: Sequence[Host], var: str, workers: Sequence[WorkerInfo]
) -> tuple[list[Shard], dict[int, str]]:
    """Shards for the workers there are now, and the hosts no worker may take (index -> why).

    A site's hosts are dealt round-robin into one shard per worker serving it; the rest into
    one shard per worker serving no site, restricted to those workers when site workers
    exist (else any worker may run them, a restarted one too)."""
    prefix = f"{var}:"
    serving: dict[str, list[str]] = {}
    general: list[str] = []
    for w in workers:
        sites = [r for r, n in w.resources.items() if r.startswith(prefix) and n > 0]
        for r in sites:
            serving.setdefault(r, []).append(w.address)
        if not any(r.startswith(prefix) for r in w.resources):
            general.append(w.address)
    by_site: dict[str, list[int]] = {}
    rest: list[int] = []
    for i, host in enumerate(hosts):
        site = site_of(host, var)
        if site is not None and site_resource(var, site) in serving:
            by_site.setdefault(site, []).append(i)
        else:
            rest.append(i)
    shards: list[Shard] = []
    for site, idx in by_site.items():
        resource = site_resource(var, site)
        for part in deal(len(idx), len(serving[resource])):
            shards.append(Shard(tuple(idx[j] for j in part), f"{var}={site}", resource, None))
    unserved: dict[int, str] = {}
    if rest and general:
        only = tuple(general) if serving else None
        for part in deal(len(rest), len(general)):
            shards.append(Shard(tuple(rest[j] for j in part), "any site", None, only))
    for i in rest if not general else ():
        site = site_of(hosts[i], var)
        unserved[i] = (
            f"no Dask worker serves {var}={site} (resource {site_resource(var, site)})"
            if site is not None
            else f"no Dask worker serves hosts without {var}"
        )
    return shards, unserved


def may_run(shard: Shard, workers: Sequence[WorkerInfo]) -> bool:
    """Whether some worker there is now may take the shard."""
    if shard.resource is not None:
        return any(w.resources.get(shard.resource, 0) > 0 for w in workers)
    if shard.workers is not None:
        return any(w.address in shard.workers for w in workers)
    return bool(workers)


class WorkerRefused(Exception):
    """The worker cannot run this controller's shard (another fleet version)."""


def _run_shard(
    version: str,
    run: ShardRun[R],
    lost_host: Callable[[Host, str], R],
    is_failure: Callable[[R], bool],
    hosts: list[Host],
    ctx: Any,
) -> list[R]:
    # Pickled by reference: the worker imports its own fleet, which must be the controller's.
    if version != fleet.__version__:
        raise WorkerRefused(f"Dask worker runs fleet {fleet.__version__}, controller {version}")
    # In a child process, not among the worker's threads: a thread per connection beside the
    # worker's profiler (sys._current_frames every 10 ms) deadlocked CPython 3.11 in bench
    # runs, and the worker stopped heartbeating until the scheduler restarted it.
    return run_in_procs(hosts, ctx, 1, run, lost_host, is_failure)


def _workers(client: Any) -> list[WorkerInfo]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return [WorkerInfo(addr, dict(w.get("resources") or {})) for addr, w in info.items()]


def connect(address: str, timeout: float) -> Any:
    """A Dask client of the scheduler, with at least one worker; UsageError (exit 2, before
    any host is contacted) when Dask is missing or the scheduler does not answer."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError(
            f"--scheduler {address}: Dask is not installed: pip install 'fleet[dask]'"
        ) from None
    # Dask's own log lines (reconnect attempts, tracebacks) only with --debug: what went wrong
    # reaches the user as one line, or as the hosts' errors.
    if not logging.getLogger("fleet").isEnabledFor(logging.DEBUG):
        for name in ["distributed", *logging.root.manager.loggerDict]:
            if name.split(".")[0] == "distributed":  # Dask sets some children's levels itself
                logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--scheduler {address}: cannot reach the Dask scheduler: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise UsageError(
            f"--scheduler {address}: no Dask worker connected within {timeout:g} s"
        ) from None
    return client


def run_on_dask(
    hosts: list[Host],
    ctx: Any,
    run: ShardRun[R],
    lost_host: Callable[[Host, str], R],
    is_failure: Callable[[R], bool],
    progress: ProgressFactory | None = None,
) -> list[R]:
    """`run(shard, ctx_for_shard, None)` on the Dask workers of `ctx.scheduler`, one task per
    shard; results merged in the hosts' order. Ctrl-C (KeyboardInterrupt) releases every
    shard before it propagates (a shard already running finishes its hosts: Dask cannot stop a
    running task, and an audit only reads)."""
    client = connect(ctx.scheduler, ctx.ssh.connect_timeout)  # UsageError without Dask
    from distributed import wait
    from distributed.scheduler import KilledWorker

    sink = progress(len(hosts)) if progress else None
    results: dict[int, R] = {}
    pending: dict[Any, Shard] = {}
    try:
        shards, unserved = plan_shards(hosts, ctx.shard_by, _workers(client))
        for i, why in unserved.items():
            results[i] = lost_host(hosts[i], why)
        failed = len(unserved)
        run_id = uuid.uuid4().hex[:8]
        for n, shard in enumerate(shards):
            names = {hosts[i].name for i in shard.hosts}
            sctx = replace(
                ctx,
                procs=1,
                scheduler=None,
                endpoints={k: v for k, v in ctx.endpoints.items() if k in names},
            )
            fut = client.submit(
                _run_shard,
                fleet.__version__,
                run,
                lost_host,
                is_failure,
                [hosts[i] for i in shard.hosts],
                sctx,
                key=f"fleet-{run_id}-{shard.label.replace(' ', '-')}-{n}",
                resources={shard.resource: 1} if shard.resource else None,
                workers=list(shard.workers) if shard.workers else None,
                allow_other_workers=False,
                pure=False,
            )
            pending[fut] = shard
        stranded: dict[Any, float] = {}  # future -> since when no worker may take it
        while pending:
            try:
                # cancelled futures (the scheduler gone) are judged below, by their status
                with contextlib.suppress(TimeoutError, CancelledError), client.as_current():
                    wait(list(pending), timeout=1.0, return_when="FIRST_COMPLETED")
                workers = _workers(client)
            except OSError as exc:  # the scheduler went away (CommClosedError is an OSError)
                why = f"worker lost: Dask scheduler {ctx.scheduler} lost: {exc}"
                for shard in pending.values():
                    results.update(_lost(hosts, shard, why, lost_host))
                pending.clear()
                break
            now = time.monotonic()
            for fut in list(pending):
                shard = pending[fut]
                if fut.status == "finished":
                    got = fut.result()
                    for i, r in zip(shard.hosts, got, strict=True):
                        results[i] = r
                elif fut.status in ("error", "cancelled", "lost"):
                    results.update(_lost(hosts, shard, _why(fut, KilledWorker), lost_host))
                elif may_run(shard, workers):
                    stranded.pop(fut, None)
                    continue
                elif now - stranded.setdefault(fut, now) >= NO_WORKER_GRACE_S:
                    fut.cancel()
                    why = f"worker lost: no Dask worker left that may run {shard.label}"
                    results.update(_lost(hosts, shard, why, lost_host))
                else:
                    continue
                del pending[fut]
                failed += sum(is_failure(results[i]) for i in shard.hosts)
                if sink:
                    sink.update(len(results), failed)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(pending), force=True)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.close()
    if sink:
        sink.finish()
    return [results[i] for i in range(len(hosts))]


def _why(fut: Any, killed: type[BaseException]) -> str:
    if fut.status != "error":
        return f"worker lost: shard {fut.status} by the Dask scheduler"
    exc = fut.exception()
    if isinstance(exc, killed):
        return "worker lost: Dask workers died running this shard (allowed-failures reached)"
    return f"Dask worker failed: {type(exc).__name__}: {exc}"


def _lost(
    hosts: list[Host], shard: Shard, why: str, lost_host: Callable[[Host, str], R]
) -> dict[int, R]:
    return {i: lost_host(hosts[i], why) for i in shard.hosts}
