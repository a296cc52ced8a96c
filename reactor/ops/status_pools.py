"""Each GPU pool as /status, the dashboard, the console and `gpu-reactor status` show it,
and the tasks no pool runs.

Pure: built from a ReactorState (its pools, each pool's spawn gate, the last reconcile's
routing and desired workers) and the settings. Without POOLS_FILE there is one pool,
``default``, whose figures are the fleet's. The figures are those the metrics export
(reactor/engine/pool_metrics.py ``pool_rows``), so a page and a graph cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from reactor.domain.model import LIVE_STATUSES, Limits, Snapshot, WorkerState
from reactor.domain.pools import Pool, Pools
from reactor.domain.routing import Routing, route, unrouted_tasks
from reactor.engine.pool_metrics import pool_rows, top_types
from reactor.engine.state import ReactorState
from reactor.pools_file import pool_secrets
from reactor.settings import Settings


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolView(_View):
    name: str
    task_types: list[str]  # names or globs; ["*"]: every type
    gpu_types: list[str]  # RUNPOD_GPU_TYPES, in order of preference
    min_active_gpus: int
    max_active_gpus: int
    desired_workers: int
    demand: int  # tasks routed to it that need a GPU (claimable Queued and In Progress)
    queued: int  # claimable Queued tasks routed to it (spilled-in ones included)
    queued_by_type: dict[str, int]  # of those, by task type (the 20 commonest)
    spilled_in: int  # of the queued, tasks that earlier pools could not take
    spilled_out: int  # its tasks routed on to later pools
    live_workers: int
    workers: dict[str, int]  # live workers by status
    hourly_burn_usd: float
    max_hourly_spend_usd: float | None  # its budget
    expected_worker_price_usd: float
    spawn_blocked_until: datetime | None  # its own spawns' pause, while it lasts
    spawn_blocked_reason: str | None
    worker_start_failures: int  # in a row; from 3, one probe pod at a time


class UnroutedView(_View):
    """Claimable Queued tasks that no pool runs: not demand, nothing is spawned for them."""

    total: int = 0
    by_type: dict[str, int] = {}  # the 20 commonest types, the rest as "(other)"


def pools_of(state: ReactorState, settings: Settings) -> Pools:
    """The pools in force: the reactor's, or the environment's one pool before it read them."""
    return state.pools if state.pools is not None else Pools.single(settings)


def status_secrets(state: ReactorState, settings: Settings) -> list[str]:
    """What to scrub from /status, the console's feed and `gpu-reactor status`: the
    settings' secrets and those a pool's worker_extra_env adds."""
    return [*settings.secrets(), *pool_secrets(pools_of(state, settings))]


def pool_limits(state: ReactorState, pools: Pools, now: datetime) -> dict[str, Limits]:
    """Each pool's spawn limits at ``now``, read from its gate (a pause that is over is
    not one); the first pool's gate is the reactor's ``gate`` without POOLS_FILE."""
    out: dict[str, Limits] = {}
    for pool in pools:
        gate = state.gates.get(pool.name)
        if gate is None and pool.name == pools.first.name:
            gate = state.gate
        out[pool.name] = gate.limits(now) if gate is not None else Limits()
    return out


def routing_of(state: ReactorState, pools: Pools, snap: Snapshot) -> Routing | None:
    """The last reconcile's routing while it is of these pools; else worked out afresh
    (a reload since, or a CLI read); None without POOLS_FILE."""
    if not pools.routed:
        return None
    known = state.routing
    if known is not None and tuple(p.name for p in known.parts) == pools.names:
        return known
    return route(snap, pools, pool_limits(state, pools, snap.now))


def worker_pool(pools: Pools, worker: WorkerState) -> str | None:
    """The pool a worker belongs to; the name its row gives when that pool left the file."""
    pool = pools.pool_of(worker)
    return pool.name if pool is not None else worker.pool


def _desired(state: ReactorState, pools: Pools, routing: Routing | None) -> dict[str, int]:
    if state.pool_desired:
        return dict(state.pool_desired)
    if routing is not None:
        return {p.name: p.desired for p in routing.parts}
    return {pools.first.name: state.desired_workers or 0}


def _queued(snap: Snapshot, pool: Pool, routing: Routing | None) -> tuple[int, int, dict[str, int]]:
    """(queued, spilled in, by type) routed to the pool."""
    part = routing.part(pool.name) if routing is not None else None
    if part is not None:
        return part.queued, part.spilled_in, dict(top_types(part.by_type))
    if routing is not None:
        return 0, 0, {}
    mine = [(t, n) for t, n in snap.ready_by_type or () if n > 0 and pool.runs(t)]
    return snap.claimable, 0, dict(top_types(mine))


def _pool_view(
    pool: Pool,
    figures: tuple[Snapshot, int, int, int],
    queued: tuple[int, int, dict[str, int]],
    limits: Limits,
) -> PoolView:
    part, desired, demand, spilled_out = figures
    s = pool.settings
    by_status = {
        str(status): sum(1 for w in part.workers if w.status == status)
        for status in sorted(LIVE_STATUSES)
    }
    return PoolView(
        name=pool.name,
        task_types=list(pool.patterns),
        gpu_types=list(s.runpod_gpu_types),
        min_active_gpus=s.min_active_gpus,
        max_active_gpus=s.max_active_gpus,
        desired_workers=desired,
        demand=demand,
        queued=queued[0],
        queued_by_type=queued[2],
        spilled_in=queued[1],
        spilled_out=spilled_out,
        live_workers=len(part.workers),
        workers=by_status,
        hourly_burn_usd=round(part.hourly_burn, 4),
        max_hourly_spend_usd=s.max_hourly_spend_usd,
        expected_worker_price_usd=round(limits.expected_price or s.gpu_hourly_price_usd, 4),
        spawn_blocked_until=limits.spawn_blocked_until,
        spawn_blocked_reason=limits.spawn_blocked_reason,
        worker_start_failures=limits.start_failures,
    )


def pool_views(
    state: ReactorState, settings: Settings, now: datetime
) -> tuple[list[PoolView], UnroutedView]:
    """One view per pool in file order, and the tasks no pool runs; the spawn limits as
    the gates have them at ``now``. Before the first snapshot, the figures are 0."""
    pools = pools_of(state, settings)
    limits: Mapping[str, Limits] = pool_limits(state, pools, now)
    snap = state.snapshot or Snapshot(now=now, queued=0, in_progress=0)
    routing = routing_of(state, pools, snap)
    rows = {
        name: (part, desired, demand, spilled)
        for name, part, desired, demand, spilled in pool_rows(
            snap, pools, routing, _desired(state, pools, routing)
        )
    }
    views = [_pool_view(p, rows[p.name], _queued(snap, p, routing), limits[p.name]) for p in pools]
    unrouted = routing.unrouted if routing is not None else unrouted_tasks(snap, pools)
    by_type = dict(top_types(unrouted))
    return views, UnroutedView(total=sum(n for _, n in unrouted), by_type=by_type)
