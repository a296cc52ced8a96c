"""GPU pools: routing demand between pools, spill-over, and the policy per pool."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.domain.actions import Cause, Drain, Spawn
from reactor.domain.fleet import decide_fleet, desired_fleet, next_deadline_fleet
from reactor.domain.model import Limits, Snapshot, TaskState, WorkerState
from reactor.domain.policy import decide
from reactor.domain.pools import Pool, Pools
from reactor.domain.routing import route
from reactor.pools_file import parse_pools
from reactor.settings import Settings
from tests.domain.builders import NOW, make_settings, task, worker


def pools_of(tables: dict[str, dict[str, Any]], **env: object) -> Pools:
    return parse_pools({"pools": tables}, make_settings(**env), "pools.toml")


BIG_SMALL = {
    "big": {"task_types": ["wan_*"], "max_active_gpus": 3, "runpod_gpu_types": ["H100"]},
    "small": {"task_types": ["*"], "max_active_gpus": 4, "runpod_gpu_types": ["4090"]},
}


def snapshot(
    ready: dict[str | None, int],
    workers: tuple[WorkerState, ...] = (),
    running: tuple[TaskState, ...] = (),
) -> Snapshot:
    return Snapshot(
        now=NOW,
        queued=sum(ready.values()),
        in_progress=len(running),
        workers=workers,
        running=running,
        ready_by_type=tuple(ready.items()),
    )


def spawns(actions: list[Any]) -> Counter[str | None]:
    return Counter(a.pool for a in actions if isinstance(a, Spawn))


def test_each_type_goes_to_the_first_pool_that_runs_it_and_what_it_cannot_take_spills() -> None:
    pools = pools_of(BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    snap = snapshot({"wan_2_1": 5, "flux": 3})
    routing = route(snap, pools, {})
    big, small = routing.parts
    assert (big.queued, big.spilled_out, big.can_have) == (3, 2, 3)
    assert (small.queued, small.spilled_in) == (5, 2)
    assert dict(small.by_type) == {"flux": 3, "wan_2_1": 2}
    assert spawns(decide_fleet(snap, pools, {})) == {"big": 3, "small": 4}
    assert desired_fleet(snap, pools, {}) == {"big": 3, "small": 4}


def test_the_fleet_wide_cap_holds_across_pools_earlier_pools_first() -> None:
    pools = pools_of(BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=5)
    snap = snapshot({"wan_2_1": 5, "flux": 3}, workers=(worker("w1", pool="small"),))
    # One small worker live: 4 more fit the fleet, big's 3 first.
    assert spawns(decide_fleet(snap, pools, {})) == {"big": 3, "small": 1}


def test_the_fleet_wide_budget_holds_across_pools() -> None:
    pools = pools_of(
        BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20, MAX_HOURLY_SPEND_USD=10
    )
    limits = {"big": Limits(expected_price=3.0), "small": Limits(expected_price=0.5)}
    snap = snapshot({"wan_2_1": 5, "flux": 3})
    got = spawns(decide_fleet(snap, pools, limits))
    assert got == {"big": 3, "small": 2}  # 9 + 1 = 10 USD/h
    assert 3.0 * got["big"] + 0.5 * got["small"] <= 10


def test_a_pool_out_of_capacity_spills_everything_and_gets_it_back_when_the_pause_ends() -> None:
    pools = pools_of(BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    snap = snapshot({"wan_2_1": 2})
    until = NOW + timedelta(seconds=30)
    out = {
        "big": Limits(
            spawn_blocked_until=until, spawn_blocked_reason="no_capacity", pool_unavailable=True
        )
    }
    assert spawns(decide_fleet(snap, pools, out)) == {"small": 2}
    assert next_deadline_fleet(snap, pools, out) == until
    later = dataclasses.replace(snap, now=until)
    assert spawns(decide_fleet(later, pools, out)) == {"big": 2}


def test_a_pause_of_the_account_does_not_spill() -> None:
    pools = pools_of(BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    snap = snapshot({"wan_2_1": 2})
    limited = {
        "big": Limits(
            spawn_blocked_until=NOW + timedelta(seconds=5), spawn_blocked_reason="rate_limited"
        )
    }
    assert spawns(decide_fleet(snap, pools, limited)) == {}
    assert route(snap, pools, limited).parts[0].queued == 2


def test_a_pool_at_its_budget_spills() -> None:
    tables = {**BIG_SMALL, "big": {**BIG_SMALL["big"], "max_hourly_spend_usd": 2.0}}
    pools = pools_of(tables, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    limits = {"big": Limits(expected_price=1.0), "small": Limits(expected_price=0.25)}
    snap = snapshot({"wan_2_1": 3})
    assert spawns(decide_fleet(snap, pools, limits)) == {"big": 2, "small": 1}


def test_a_type_no_later_pool_runs_stays_in_its_pool() -> None:
    tables = {
        "big": {"task_types": ["wan_*"], "max_active_gpus": 1},
        "small": {"task_types": ["flux*"], "max_active_gpus": 4},
    }
    pools = pools_of(tables, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    routing = route(snapshot({"wan_2_1": 3, "flux": 1}), pools, {})
    assert [(p.queued, p.spilled_out) for p in routing.parts] == [(3, 0), (1, 0)]
    assert [p.desired for p in routing.parts] == [1, 1]


def test_a_task_no_pool_runs_is_reported_and_spawns_nothing() -> None:
    tables = {"big": {"task_types": ["wan_*"]}, "small": {"task_types": ["flux_?"]}}
    pools = pools_of(tables, MAX_ACTIVE_GPUS=20)
    snap = snapshot({"upscale": 4, "flux_12": 1, None: 2})
    routing = route(snap, pools, {})
    assert dict(routing.unrouted) == {"upscale": 4, "flux_12": 1, None: 2}
    assert routing.unrouted_total == 7
    assert decide_fleet(snap, pools, {}) == []


def test_in_progress_tasks_count_for_the_pool_of_the_worker_running_them() -> None:
    pools = pools_of(BIG_SMALL, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    busy = worker("b1", pool="big")
    snap = snapshot({"wan_2_1": 1}, workers=(busy,), running=(task("t1", "b1"),))
    big, small = route(snap, pools, {}).parts
    assert (big.snapshot.demand, big.desired, small.desired) == (2, 2, 0)
    assert spawns(decide_fleet(snap, pools, {})) == {"big": 1}


def test_workers_of_a_removed_pool_are_drained_never_retired_with_a_task() -> None:
    pools = pools_of(BIG_SMALL, MAX_ACTIVE_GPUS=20)
    idle = worker("old1", pool="gone")
    busy = worker("old2", pool="gone")
    snap = snapshot({}, workers=(idle, busy), running=(task("t1", "old2"),))
    actions = decide_fleet(snap, pools, {})
    drains = {a.worker_id: a.cause for a in actions if isinstance(a, Drain)}
    assert drains == {"old1": Cause.POOL_REMOVED, "old2": Cause.POOL_REMOVED}
    assert all(isinstance(a, Drain) for a in actions)


def test_a_worker_naming_no_pool_belongs_to_the_first() -> None:
    pools = pools_of(BIG_SMALL, MAX_ACTIVE_GPUS=20, SCALE_DOWN_IDLE_SEC=30)
    legacy = worker("w0", pool=None, idle=5)
    named_default = worker("w1", pool="default", idle=5)
    assert pools.pool_of(legacy) is pools.first
    assert pools.pool_of(named_default) is pools.first
    snap = snapshot({"wan_x": 2}, workers=(legacy, named_default))
    assert decide_fleet(snap, pools, {}) == []  # they serve big's 2 tasks (threshold 2)


def test_without_a_pools_file_it_is_exactly_the_policy() -> None:
    env = make_settings(TASKS_PER_GPU_THRESHOLD=1)
    pools = Pools.single(env)
    snap = snapshot({"x": 3}, workers=(worker("w1", pool="anything", idle=400),))
    plain = dataclasses.replace(snap, ready_by_type=None)
    assert decide_fleet(plain, pools, {}) == decide(plain, env, Limits())
    assert decide_fleet(plain, pools, {}) != []


def test_spawns_carry_their_pool_and_retires_theirs() -> None:
    pools = pools_of(BIG_SMALL, MAX_ACTIVE_GPUS=20, GPU_IDLE_TIMEOUT_SEC=60)
    dead = worker("d1", pool="small", beat=500)
    actions = decide_fleet(snapshot({}, workers=(dead,)), pools, {})
    assert [(a.kind, a.pool) for a in actions] == [("retire", "small")]  # type: ignore[union-attr]


# --- properties ---------------------------------------------------------------------------

TYPES = ["wan_a", "wan_b", "flux", "cap"]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Pools, Snapshot, dict[str, Limits]]:
    fleet_max = draw(st.integers(0, 12))
    tables: dict[str, dict[str, Any]] = {}
    for name in draw(st.lists(st.sampled_from(["p1", "p2", "p3"]), min_size=1, unique=True)):
        tables[name] = {
            "task_types": draw(
                st.lists(st.sampled_from(["wan_*", "flux", "*", "cap", "?lux"]), min_size=1)
            ),
            "max_active_gpus": draw(st.integers(0, 6)),
            "tasks_per_gpu_threshold": draw(st.integers(1, 3)),
        }
    env: dict[str, Any] = {"MAX_ACTIVE_GPUS": max(fleet_max, 0)}
    try:
        pools = pools_of(tables, **env)
    except Exception:  # noqa: BLE001 - an invalid draw (e.g. mins above the fleet max)
        pools = pools_of({"p1": {"max_active_gpus": 1}}, MAX_ACTIVE_GPUS=1)
    names = [*pools.names, "gone", None]
    workers = tuple(
        worker(
            f"w{i}",
            draw(st.sampled_from(["active", "spawning", "terminating"])),
            pool=draw(st.sampled_from(names)),
            idle=draw(st.sampled_from([None, 5, 400])),
        )
        for i in range(draw(st.integers(0, 8)))
    )
    active = [w.id for w in workers if w.status == "active"]
    running = tuple(
        TaskState(f"t{i}", wid, 1, NOW - timedelta(seconds=5), draw(st.sampled_from(TYPES)))
        for i, wid in enumerate(
            draw(st.lists(st.sampled_from(active), unique=True)) if active else []
        )
    )
    ready = {t: draw(st.integers(0, 8)) for t in TYPES}
    limits = {
        n: Limits(
            expected_price=draw(st.sampled_from([0.0, 1.0])),
            spawn_blocked_until=draw(st.sampled_from([None, NOW + timedelta(seconds=9)])),
            pool_unavailable=draw(st.booleans()),
        )
        for n in pools.names
    }
    return pools, snapshot(ready, workers, running), limits


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_every_cap_holds_and_every_spawn_serves_demand_of_its_pool(
    case: tuple[Pools, Snapshot, dict[str, Limits]],
) -> None:
    pools, snap, limits = case
    actions = decide_fleet(snap, pools, limits)
    routing = route(snap, pools, limits)
    made = spawns(actions)
    ending = {a.worker_id for a in actions if a.kind == "retire"}
    live = [w for w in snap.workers if w.id not in ending]
    assert sum(made.values()) <= max(pools.settings.max_active_gpus - len(live), 0)
    for part in routing.parts:
        mine = [w for w in part.snapshot.workers if w.id not in ending]
        n = made.get(part.name, 0)
        assert n <= max(part.pool.settings.max_active_gpus - len(mine), 0)
        if n:
            assert part.snapshot.demand > 0 or part.pool.settings.min_active_gpus > 0
            lim = limits[part.name]
            assert lim.spawn_blocked_until is None or snap.now >= lim.spawn_blocked_until
    # Every claimable task is routed to exactly one pool, or reported as no pool's.
    routed = sum(p.queued for p in routing.parts) + routing.unrouted_total
    assert routed == sum(n for _, n in snap.ready_by_type or ())
    for part in routing.parts:
        for task_type, _ in part.by_type:
            assert part.pool.runs(task_type)
    assert set(made) <= set(pools.names)


def test_a_pool_is_made_of_the_environment_and_its_own_keys() -> None:
    pools = pools_of(BIG_SMALL, MAX_ACTIVE_GPUS=9, SCALE_DOWN_IDLE_SEC=77)
    big = pools.get("big")
    assert isinstance(big, Pool) and isinstance(big.settings, Settings)
    assert (big.settings.max_active_gpus, big.settings.scale_down_idle_sec) == (3, 77)
    assert big.settings.runpod_gpu_types == ["H100"]
    assert pools.settings.max_active_gpus == 9
    assert pools.patterns() is None  # small runs every type


def test_a_pool_with_its_own_demand_query_is_told_its_demand_and_spills_nothing() -> None:
    tables = {
        "big": {**BIG_SMALL["big"], "demand_sql": "SELECT 1"},
        "small": BIG_SMALL["small"],
    }
    pools = pools_of(tables, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    snap = dataclasses.replace(snapshot({"wan_2_1": 9, "flux": 2}), pool_demand=(("big", 1),))
    big, small = route(snap, pools, {}).parts
    # big's query says 1 (its app's rules: credits, run types): 1 worker, no spill-over.
    assert (big.snapshot.demand, big.desired, big.spilled_out) == (1, 1, 0)
    assert (small.queued, small.spilled_in) == (2, 0)
    assert spawns(decide_fleet(snap, pools, {})) == {"big": 1, "small": 2}
    # Nor does it take what an earlier pool spills.
    tables = {
        "small": {**BIG_SMALL["small"], "task_types": ["*"], "max_active_gpus": 1},
        "big": {**BIG_SMALL["big"], "demand_sql": "SELECT 0"},
    }
    pools = pools_of(tables, TASKS_PER_GPU_THRESHOLD=1, MAX_ACTIVE_GPUS=20)
    snap = dataclasses.replace(snapshot({"wan_2_1": 3}), pool_demand=(("big", 0),))
    first, second = route(snap, pools, {}).parts
    assert (first.queued, first.spilled_out, second.spilled_in, second.desired) == (3, 0, 0, 0)
