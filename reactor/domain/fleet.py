"""The policy over GPU pools: the same steps as ``policy.decide``, run per pool.

Each pool's part of the snapshot (reactor.domain.routing) is judged with the pool's own
settings and spawn gate: its recoveries, stuck tasks and scaling. What concerns the
fleet as a whole runs once: orphaned tasks, the sweep's comparison with the provider's
pods, the draining of workers whose pool left the file, and the fleet-wide caps - the
environment's MAX_ACTIVE_GPUS and MAX_HOURLY_SPEND_USD hold across pools, the spawns of
earlier pools first.

Without POOLS_FILE there is one pool and this is exactly ``policy.decide``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from reactor.domain import policy, rules
from reactor.domain.actions import Action, Cause, Drain, Retire, Spawn
from reactor.domain.model import CAPACITY_STATUSES, Limits, Snapshot
from reactor.domain.pools import Pools
from reactor.domain.routing import NO_LIMITS, Routing, route


def decide_fleet(snap: Snapshot, pools: Pools, limits: Mapping[str, Limits]) -> list[Action]:
    if not pools.routed:
        only = pools.first
        return policy.decide(snap, only.settings, limits.get(only.name))  # pool None: the only
    routing = route(snap, pools, limits)
    recovered: list[Retire] = []
    stuck: list[Action] = []
    for part in routing.parts:
        ended, held = policy.health(part.snapshot, part.pool.settings)
        recovered += [dataclasses.replace(r, pool=part.name) for r in ended]
        stuck += held
    ended, held = policy.health(routing.removed, pools.settings)
    recovered += ended
    stuck += held
    orphaned = policy.orphaned_tasks(snap)
    swept = _pool_named(policy.sweep(snap, pools.settings, recovered), snap, pools)
    gone = policy.retired([*recovered, *swept])
    draining = policy.drained(stuck)
    scaled: list[Action] = []
    room = fleet_room = _fleet_room(snap, pools, limits, gone)
    for part in routing.parts:
        lim = limits.get(part.name, NO_LIMITS)
        steps = policy.scale(
            part.snapshot, part.pool.settings, lim, gone, draining, pool=part.name, fleet_room=room
        )
        room -= sum(1 for a in steps if isinstance(a, Spawn))
        scaled += steps
    scaled += _drain_removed(routing, gone | draining)
    scaled = _within_fleet_caps(snap, pools, limits, scaled, gone, fleet_room)
    return [*recovered, *stuck, *orphaned, *swept, *scaled]


def _pool_named(actions: list[Action], snap: Snapshot, pools: Pools) -> list[Action]:
    out: list[Action] = []
    for a in actions:
        if isinstance(a, Retire):
            worker = snap.worker(a.worker_id)
            pool = pools.pool_of(worker) if worker is not None else None
            if pool is not None:
                a = dataclasses.replace(a, pool=pool.name)
        out.append(a)
    return out


def _drain_removed(routing: Routing, leave: frozenset[str]) -> list[Action]:
    """Workers whose pool left the file finish their task and go; none is killed."""
    return [
        Drain(
            w.id,
            reason=f"its pool {w.pool!r} is no longer in POOLS_FILE",
            cause=Cause.POOL_REMOVED,
        )
        for w in routing.removed.workers
        if w.status in CAPACITY_STATUSES and w.id not in leave
    ]


def _fleet_room(
    snap: Snapshot, pools: Pools, limits: Mapping[str, Limits], gone: frozenset[str]
) -> int:
    """Workers the fleet-wide MAX_ACTIVE_GPUS leaves room for (pods whose terminate has
    not succeeded hold theirs)."""
    live = sum(1 for w in snap.workers if w.id not in gone)
    unconfirmed = sum(lim.unconfirmed_pods for lim in limits.values())
    return pools.settings.max_active_gpus - live - unconfirmed


def _within_fleet_caps(
    snap: Snapshot,
    pools: Pools,
    limits: Mapping[str, Limits],
    actions: list[Action],
    gone: frozenset[str],
    room: int,
) -> list[Action]:
    """The spawns that fit the fleet-wide MAX_ACTIVE_GPUS (``room``: what it leaves) and
    MAX_HOURLY_SPEND_USD, in pool order; the other actions as they are."""
    budget = pools.settings.max_hourly_spend_usd
    burn = sum(w.cost_per_hr for w in snap.workers if w.id not in gone)
    out: list[Action] = []
    for action in actions:
        if isinstance(action, Spawn):
            price = limits.get(action.pool or "", NO_LIMITS).expected_price
            if room <= 0 or (budget is not None and burn + price > budget + 1e-9):
                continue
            room -= 1
            burn += price
        out.append(action)
    return out


def next_deadline_fleet(
    snap: Snapshot, pools: Pools, limits: Mapping[str, Limits]
) -> datetime | None:
    """The earliest moment at which ``decide_fleet`` could answer differently: each
    pool's own deadlines, those of the workers whose pool left, and the queue's."""
    if not pools.routed:
        only = pools.first
        return policy.next_deadline(snap, only.settings, limits.get(only.name))
    routing = route(snap, pools, limits)
    moments = [
        policy.next_deadline(p.snapshot, p.pool.settings, limits.get(p.name, NO_LIMITS))
        for p in routing.parts
    ]
    moments.append(policy.next_deadline(routing.removed, pools.settings))
    moments.append(snap.next_retry_at)
    future = [m for m in moments if m is not None and m > snap.now]
    return min(future) if future else None


def desired_fleet(snap: Snapshot, pools: Pools, limits: Mapping[str, Limits]) -> dict[str, int]:
    """Each pool's desired workers."""
    if not pools.routed:
        only = pools.first
        return {only.name: rules.desired_workers(snap, only.settings)}
    return {p.name: p.desired for p in route(snap, pools, limits).parts}
