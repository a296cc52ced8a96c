"""Each pool's figures into the metrics with a ``pool`` label, after every reconcile.

The label takes the pools in force (POOLS_FILE, or ``default``): bounded. The tasks no
pool runs are labelled by task type, the 20 commonest, the rest summed as ``(other)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from reactor.domain import rules
from reactor.domain.model import LIVE_STATUSES, Limits, Snapshot
from reactor.domain.pools import Pools
from reactor.domain.routing import Routing, unrouted_tasks
from reactor.engine.metrics import Metrics

UNROUTED_TYPES_SHOWN = 20
OTHER_TYPES = "(other)"


def pool_rows(
    snap: Snapshot, pools: Pools, routing: Routing | None, desired: dict[str, int]
) -> Iterable[tuple[str, Snapshot, int, int, int]]:
    """(pool, its part of the snapshot, desired workers, demand, spilled out) per pool."""
    if routing is None:
        only = pools.first
        demand = rules.gpu_demand(snap, only.settings)
        yield only.name, snap, desired.get(only.name, 0), demand, 0
        return
    for part in routing.parts:
        yield (
            part.name,
            part.snapshot,
            desired.get(part.name, 0),
            part.snapshot.demand,
            part.spilled_out,
        )


def top_types(
    counts: Iterable[tuple[str | None, int]], shown: int = UNROUTED_TYPES_SHOWN
) -> list[tuple[str, int]]:
    """The ``shown`` commonest types, then the rest summed as (other)."""
    ordered = sorted(((str(t), n) for t, n in counts), key=lambda kv: (-kv[1], kv[0]))
    head, rest = ordered[:shown], ordered[shown:]
    if rest:
        head.append((OTHER_TYPES, sum(n for _, n in rest)))
    return head


def record_pools(
    m: Metrics,
    snap: Snapshot,
    pools: Pools,
    routing: Routing | None,
    desired: dict[str, int],
    limits: dict[str, Limits],
) -> None:
    for gauge in (
        m.pool_workers,
        m.pool_desired,
        m.pool_demand,
        m.pool_spilled,
        m.pool_burn,
        m.pool_spawn_blocked,
        m.unrouted,
    ):
        gauge.clear()  # a pool removed by a reload leaves no series behind
    for name, part, wanted, demand, spilled in pool_rows(snap, pools, routing, desired):
        for status in LIVE_STATUSES:
            count = sum(1 for w in part.workers if w.status == status)
            m.pool_workers.labels(pool=name, status=status).set(count)
        m.pool_desired.labels(pool=name).set(wanted)
        m.pool_demand.labels(pool=name).set(demand)
        m.pool_spilled.labels(pool=name).set(spilled)
        m.pool_burn.labels(pool=name).set(part.hourly_burn)
        lim = limits.get(name)
        until = lim.spawn_blocked_until if lim is not None else None
        m.pool_spawn_blocked.labels(pool=name).set(float(until is not None and snap.now < until))
    unrouted = routing.unrouted if routing is not None else unrouted_tasks(snap, pools)
    for task_type, count in top_types(unrouted):
        m.unrouted.labels(task_type=task_type).set(count)
