"""Which pool each task's demand goes to, and each pool's part of a snapshot.

A task belongs to the first pool whose task types match it, in file order. A type that
several pools list has them as an ordered preference: the demand a pool cannot take -
it is at its MAX_ACTIVE_GPUS, at its budget, or its own spawns are paused (no capacity on
any of its GPU types, a create refused, pods that do not start) - spills over to the next
pool that lists the type, and comes back as soon as the pool can take it again. A task
that no pool matches is not demand: it is reported by type.

Pure: what a pool can take is worked out from the snapshot and the spawn gates' Limits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from reactor.domain import rules
from reactor.domain.model import CAPACITY_STATUSES, Limits, Snapshot, TaskState, WorkerState
from reactor.domain.pools import Pool, Pools
from reactor.domain.spawn_gate import START_FAILURES_BEFORE_PROBING

NO_LIMITS = Limits()


@dataclass(frozen=True)
class PoolPart:
    """One pool's part of a snapshot, and the demand routed to it."""

    pool: Pool
    snapshot: Snapshot  # its workers, their tasks, and its routed demand
    queued: int  # claimable Queued tasks routed to it (spilled-in ones included)
    spilled_in: int  # of those, tasks that earlier pools could not take
    spilled_out: int  # its tasks routed on to later pools
    can_have: int  # the workers it can have now (its max, budget and pause)
    by_type: tuple[tuple[str | None, int], ...] = ()  # the queued tasks routed to it

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def desired(self) -> int:
        return rules.desired_workers(self.snapshot, self.pool.settings)


@dataclass(frozen=True)
class Routing:
    parts: tuple[PoolPart, ...]
    removed: Snapshot  # the workers whose pool left the file, and their tasks
    unrouted: tuple[tuple[str | None, int], ...]  # claimable tasks no pool runs, by type
    _by_name: dict[str, PoolPart] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parts})

    def part(self, name: str) -> PoolPart | None:
        return self._by_name.get(name)

    @property
    def unrouted_total(self) -> int:
        return sum(n for _, n in self.unrouted)


def _part_snapshot(
    snap: Snapshot,
    workers: list[WorkerState],
    running: list[TaskState],
    queued: int,
    demand: int,
) -> Snapshot:
    """A pool's part: its workers and their tasks, the demand routed to it; the fleet's
    own counts (waiting, blocked, DEMAND_SQL, the provider's pods) are not a pool's. Made
    from the whole snapshot, so what else it says (its clock, any figure a rule reads)
    is the same."""
    return dataclasses.replace(
        snap,
        queued=queued,
        in_progress=len(running),
        workers=tuple(workers),
        running=tuple(running),
        pods=None,
        waiting=0,
        next_retry_at=None,
        oldest_queued_at=None,
        other_types=0,
        blocked_for_good=0,
        blocked_waiting=0,
        demand_sql=None,
        ready_by_type=None,
        pool_demand=(),
        routed_demand=demand,
    )


def _can_have(pool: Pool, workers: list[WorkerState], limits: Limits, snap: Snapshot) -> int:
    """The workers a pool can have now: its max, within its budget; no more than it has
    while its own spawns are paused, and one more while it probes after start failures."""
    s = pool.settings
    capacity = sum(1 for w in workers if w.status in CAPACITY_STATUSES)
    cap = s.max_active_gpus
    paused = limits.spawn_blocked_until is not None and snap.now < limits.spawn_blocked_until
    if paused and limits.pool_unavailable:
        cap = min(cap, capacity)
    elif limits.start_failures >= START_FAILURES_BEFORE_PROBING:
        cap = min(cap, capacity + 1)
    if s.max_hourly_spend_usd is not None and limits.expected_price > 0:
        burn = sum(w.cost_per_hr for w in workers)
        affordable = (s.max_hourly_spend_usd - burn) / limits.expected_price + 1e-9
        if affordable < cap:  # compared as a float first, as policy._spawn_room does
            cap = min(cap, capacity + max(math.floor(affordable), 0))
    return max(cap, 0)


def route(snap: Snapshot, pools: Pools, limits: Mapping[str, Limits]) -> Routing:
    """Each pool's part of ``snap`` and the demand routed to it; worked out once per
    snapshot, pools and limits (the reconcile, the deadline and /status all ask)."""
    key = tuple(sorted((n, limits[n]) for n in pools.names if n in limits))
    cache: dict[object, Routing] = snap.derived("routing", pools, dict)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = _route(snap, pools, limits)
    return hit


def _members(
    snap: Snapshot, pools: Pools
) -> tuple[list[list[WorkerState]], list[list[TaskState]], list[WorkerState], list[TaskState]]:
    """Each pool's workers and the tasks they hold, and those of the workers whose pool
    left the file. A task whose worker is not live is no pool's (an orphan: requeued)."""
    order = pools.pools
    index = {p.name: i for i, p in enumerate(order)}
    members: list[list[WorkerState]] = [[] for _ in order]
    held: list[list[TaskState]] = [[] for _ in order]
    removed: list[WorkerState] = []
    removed_tasks: list[TaskState] = []
    named: dict[str | None, int | None] = {}  # a row's pool value -> the pool's place
    home: dict[str, int | None] = {}
    for w in snap.workers:
        if w.pool not in named:
            pool = pools.pool_named(w.pool)
            named[w.pool] = index[pool.name] if pool is not None else None
        at = home[w.id] = named[w.pool]
        (members[at] if at is not None else removed).append(w)
    for t in snap.running:
        if t.worker_id is not None and t.worker_id in home:
            at = home[t.worker_id]
            (held[at] if at is not None else removed_tasks).append(t)
    return members, held, removed, removed_tasks


def _first_choices(
    snap: Snapshot, pools: Pools
) -> tuple[dict[str | None, list[int]], list[dict[str | None, int]], list[tuple[str | None, int]]]:
    """Each type's candidate pools in file order, the tasks at each type's first pool,
    and the types no pool runs."""
    candidates: dict[str | None, list[int]] = {}
    pending: list[dict[str | None, int]] = [{} for _ in pools.pools]
    unrouted: list[tuple[str | None, int]] = []
    for task_type, count in snap.ready_by_type or ():
        if count <= 0:
            continue
        chain = [i for i, p in enumerate(pools.pools) if p.runs(task_type)]
        if not chain:
            unrouted.append((task_type, count))
            continue
        candidates[task_type] = chain
        pending[chain[0]][task_type] = pending[chain[0]].get(task_type, 0) + count
    return candidates, pending, unrouted


def _busy(pool: Pool, held: list[TaskState]) -> int:
    """The tasks a pool's workers hold that need their GPU (not the exempt parents)."""
    exempt = rules.exempt_matcher(pool.settings)
    if exempt is None:
        return len(held)
    return len(held) - sum(1 for t in held if rules.is_exempt_by(t, exempt))


def _route(snap: Snapshot, pools: Pools, limits: Mapping[str, Limits]) -> Routing:
    members, held, removed, removed_tasks = _members(snap, pools)
    candidates, pending, unrouted = _first_choices(snap, pools)
    # A pool with a demand query of its own (demand_sql) is told its demand: it neither
    # spills what it is routed nor takes what others spill.
    answers = dict(snap.pool_demand)
    counted = {i for i, p in enumerate(pools.pools) if p.name in answers}

    def later(task_type: str | None, at: int) -> int | None:
        """The next pool after ``at`` that runs the type (and counts its own demand)."""
        if at in counted:
            return None
        return next((c for c in candidates[task_type] if c > at and c not in counted), None)

    parts: list[PoolPart] = []
    spilled_in = [0] * len(pools.pools)
    for i, pool in enumerate(pools.pools):
        busy = _busy(pool, held[i])
        can_have = _can_have(pool, members[i], limits.get(pool.name, NO_LIMITS), snap)
        room = max(can_have * pool.settings.tasks_per_gpu_threshold - busy, 0)
        # The types no later pool runs stay here whatever this pool can take; then the
        # others as far as there is room, the rest moving on to their next pool.
        mine = sorted(pending[i].items(), key=lambda kv: (later(kv[0], i) is not None, str(kv[0])))
        kept: dict[str | None, int] = {}
        out = 0
        for task_type, count in mine:
            nxt = later(task_type, i)
            take = count if nxt is None else min(count, room)
            room -= take
            if take:
                kept[task_type] = take
            if nxt is not None and count > take:
                pending[nxt][task_type] = pending[nxt].get(task_type, 0) + count - take
                spilled_in[nxt] += count - take
                out += count - take
        queued = sum(kept.values())
        demand = answers.get(pool.name, busy + queued)
        part = _part_snapshot(snap, members[i], held[i], queued, demand)
        by_type = tuple(sorted(kept.items(), key=lambda kv: str(kv[0])))
        parts.append(PoolPart(pool, part, queued, spilled_in[i], out, can_have, by_type))
    gone = _part_snapshot(snap, removed, removed_tasks, 0, 0)
    return Routing(tuple(parts), gone, tuple(sorted(unrouted, key=lambda kv: str(kv[0]))))


def unrouted_tasks(snap: Snapshot, pools: Pools) -> tuple[tuple[str | None, int], ...]:
    """The claimable Queued tasks no pool runs, by type (empty unless the snapshot counted
    them by type)."""
    return tuple((t, n) for t, n in snap.ready_by_type or () if n > 0 and not pools.runs(t))
