"""/status per GPU pool (reactor/ops/status_pools.py): two pools from a POOLS_FILE fed
state as the reactor keeps it, and one pool without the file, whose view is as before."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from reactor.domain.model import Snapshot, TaskState, WorkerState
from reactor.domain.pools import Pools
from reactor.domain.spawn_gate import SpawnFailure, SpawnGate
from reactor.engine.state import ReactorState
from reactor.ops.status import (
    StatusView,
    build_status,
    stale_worker_count,
    status_json,
    stuck_task_count,
)
from reactor.ops.status_pools import status_secrets
from reactor.pools_file import parse_pools
from reactor.settings import Settings

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
POOL_SECRET = "hf_pool_only_secret_51c0"
SETTINGS = Settings(
    _env_file=None,
    DATABASE_URL="postgresql://reactor:db-pass-123@db/x",  # type: ignore[call-arg]
    MAX_ACTIVE_GPUS=8,
    MAX_HOURLY_SPEND_USD=20,
    GPU_HOURLY_PRICE_USD=1.0,
)
FILE = {
    "pools": {
        "big": {
            "task_types": ["wan_*"],
            "runpod_gpu_types": ["NVIDIA H100 80GB HBM3"],
            "max_active_gpus": 1,
            "tasks_per_gpu_threshold": 2,
            "max_hourly_spend_usd": 6.0,
            "worker_extra_env": {"HF_TOKEN": POOL_SECRET},
        },
        "small": {
            "task_types": ["wan_*", "caption"],
            "runpod_gpu_types": ["NVIDIA GeForce RTX 4090"],
            "min_active_gpus": 1,
            "max_active_gpus": 3,
        },
    }
}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def worker(worker_id: str, pool: str | None, cost: float, status: str = "active") -> WorkerState:
    return WorkerState(
        id=worker_id,
        status=status,  # type: ignore[arg-type]
        created_at=ago(600),
        activated_at=ago(590),
        last_heartbeat=ago(3),
        cost_per_hr=cost,
        pool=pool,
    )


def two_pools() -> Pools:
    return parse_pools(FILE, SETTINGS, "pools.toml")


def routed_state(pools: Pools) -> ReactorState:
    """Two wan tasks fit the big pool (one GPU, two tasks each), three spill to small; two
    tasks of a type no pool runs; one worker of a pool that left the file."""
    snap = Snapshot(
        now=NOW,
        queued=10,
        in_progress=1,
        workers=(
            worker("gpu-reactor-big00001", "big", 2.5),
            worker("gpu-reactor-small001", "small", 0.4, "spawning"),
            worker("gpu-reactor-gone0001", "retired", 0.7),
        ),
        running=(
            TaskState("t-1", "gpu-reactor-gone0001", attempts=1, started_at=ago(60), task_type="x"),
        ),
        oldest_queued_at=ago(120),
        ready_by_type=(("wan_14b", 5), ("caption", 3), ("mystery", 2)),
    )
    state = ReactorState(role="leader", started_at=NOW.timestamp() - 60)
    state.snapshot, state.pools, state.db_ok = snap, pools, True
    state.gates = {p.name: SpawnGate.for_settings(p.settings) for p in pools}
    state.gate = state.gates["big"]
    state.gates["small"].spawn_failed(SpawnFailure.RATE_LIMITED, "429", NOW, retry_after=30)
    return state


def test_each_pool_in_file_order_with_its_figures() -> None:
    view = build_status(routed_state(two_pools()), SETTINGS, now=NOW.timestamp() + 1)
    big, small = view.pools
    assert (big.name, big.task_types, big.gpu_types) == (
        "big",
        ["wan_*"],
        ["NVIDIA H100 80GB HBM3"],
    )
    assert (big.min_active_gpus, big.max_active_gpus, big.max_hourly_spend_usd) == (0, 1, 6.0)
    assert (big.queued, big.spilled_in, big.spilled_out, big.demand) == (2, 0, 3, 2)
    assert big.queued_by_type == {"wan_14b": 2}
    assert (big.desired_workers, big.live_workers, big.hourly_burn_usd) == (1, 1, 2.5)
    assert big.workers == {"active": 1, "spawning": 0, "terminating": 0}
    assert big.spawn_blocked_until is None
    assert small.task_types == ["wan_*", "caption"] and small.max_hourly_spend_usd == 20
    assert (small.queued, small.spilled_in, small.spilled_out) == (6, 3, 0)
    assert small.queued_by_type == {"caption": 3, "wan_14b": 3}
    assert (small.desired_workers, small.live_workers, small.workers["spawning"]) == (2, 1, 1)
    # Its own pause, while it lasts; the other pool spawns on.
    assert small.spawn_blocked_until == NOW + timedelta(seconds=30)
    assert small.spawn_blocked_reason == "rate_limited: 429"
    later = build_status(routed_state(two_pools()), SETTINGS, now=NOW.timestamp() + 31)
    assert later.pools[1].spawn_blocked_until is None
    assert (view.unrouted.total, view.unrouted.by_type) == (2, {"mystery": 2})
    pools = {w.id: w.pool for w in view.workers}
    assert pools == {
        "gpu-reactor-big00001": "big",
        "gpu-reactor-small001": "small",
        "gpu-reactor-gone0001": "retired",  # its pool left the file: it is being drained
    }


def test_the_reactors_own_routing_and_desired_are_shown_as_they_are() -> None:
    pools = two_pools()
    state = routed_state(pools)
    state.pool_desired = {"big": 1, "small": 2}
    view = build_status(state, SETTINGS, now=NOW.timestamp())
    assert [p.desired_workers for p in view.pools] == [1, 2]


def test_a_pools_secret_is_scrubbed() -> None:
    state = routed_state(two_pools())
    state.last_error = f"spawn failed: env HF_TOKEN={POOL_SECRET}"
    view = build_status(state, SETTINGS, now=NOW.timestamp())
    assert POOL_SECRET in view.reconcile.last_error  # type: ignore[operator]
    body = status_json(view, status_secrets(state, SETTINGS))
    assert POOL_SECRET not in body.decode() and b"db-pass-123" not in body
    assert StatusView.model_validate_json(body).pools == view.pools


def _single_state() -> ReactorState:
    snap = Snapshot(
        now=NOW,
        queued=5,
        in_progress=1,
        workers=(worker("gpu-reactor-only0001", None, 1.5),),
        running=(TaskState("t-1", "gpu-reactor-only0001", attempts=1, started_at=ago(10)),),
    )
    state = ReactorState(role="leader", started_at=NOW.timestamp() - 60)
    state.snapshot, state.desired_workers, state.db_ok = snap, 2, True
    state.gate = SpawnGate.for_settings(SETTINGS)
    return state


def _keys(data: dict[str, Any]) -> set[str]:
    return set(data)


def test_without_pools_file_one_pool_default_with_the_fleets_figures() -> None:
    state = _single_state()
    state.gate.spawn_failed(SpawnFailure.RATE_LIMITED, "429", NOW, retry_after=30)  # type: ignore[union-attr]
    view = build_status(state, SETTINGS, now=NOW.timestamp())
    [only] = view.pools
    assert (only.name, only.task_types, only.max_active_gpus) == ("default", ["*"], 8)
    assert (only.desired_workers, only.demand, only.queued) == (2, 6, 5)
    assert (only.spilled_in, only.spilled_out, only.live_workers) == (0, 0, 1)
    assert only.spawn_blocked_until == view.budget.spawn_blocked_until is not None
    assert only.hourly_burn_usd == view.budget.hourly_burn_usd == 1.5
    assert (view.unrouted.total, view.unrouted.by_type) == (0, {})
    assert [w.pool for w in view.workers] == ["default"]
    # Every key of before pools is there, with the same values; pools are only added.
    data = orjson.loads(status_json(view))
    assert _keys(data) - {"pools", "unrouted"} == set(StatusView.model_fields) - {
        "pools",
        "unrouted",
    }
    assert set(data["workers"][0]) - {"pool"} == {
        "id",
        "status",
        "health",
        "pod_id",
        "gpu_type",
        "cost_per_hr",
        "managed",
        "created_at",
        "last_heartbeat",
        "heartbeat_age_sec",
        "current_task_id",
        "current_task_age_sec",
        "tasks_in_progress",
        "draining_since",
    }
    assert data["queue"]["desired_workers"] == 2 and data["budget"]["hourly_burn_usd"] == 1.5


def test_before_the_first_snapshot_each_pool_shows_its_limits() -> None:
    state = ReactorState()
    state.pools = two_pools()
    view = build_status(state, SETTINGS, now=NOW.timestamp())
    assert [(p.name, p.max_active_gpus, p.live_workers) for p in view.pools] == [
        ("big", 1, 0),
        ("small", 3, 0),
    ]
    assert view.unrouted.total == 0


def test_a_workers_health_is_judged_by_its_pools_own_timeouts() -> None:
    """A pool's spawning_timeout_sec, gpu_idle_timeout_sec and task_stuck_timeout_sec are
    the ones its workers' health in /status (and `status --json`) is judged by, as the
    policy judges them; the environment's only for a worker whose pool left the file."""
    slow = {"task_types": ["*"], "runpod_gpu_types": ["NVIDIA GeForce RTX 4090"]}
    file = {
        "pools": {
            "slow": {**slow, "spawning_timeout_sec": 3000, "task_stuck_timeout_sec": 14400},
            "quick": {**slow, "gpu_idle_timeout_sec": 20},
        }
    }
    pools = parse_pools(file, SETTINGS, "pools.toml")  # the environment: 900 s, 4200 s, 120 s
    starting = dataclasses.replace(worker("w-start", "slow", 1.0, "spawning"), created_at=ago(1000))
    busy = worker("w-busy", "slow", 1.0)
    quiet = dataclasses.replace(worker("w-quiet", "quick", 1.0), last_heartbeat=ago(60))
    snap = Snapshot(
        now=NOW,
        queued=0,
        in_progress=1,
        workers=(starting, busy, quiet),
        running=(TaskState("t-1", "w-busy", attempts=1, started_at=ago(7200), task_type="v"),),
    )
    state = ReactorState(role="leader", started_at=NOW.timestamp() - 60)
    state.snapshot, state.pools, state.db_ok = snap, pools, True
    view = build_status(state, SETTINGS, now=NOW.timestamp())
    assert {w.id: w.health for w in view.workers} == {
        "w-start": "starting",  # 1000 s of 3000
        "w-busy": "busy",  # 2 h of 4 h
        "w-quiet": "stale",  # 60 s silent, of 20
    }
    # The counts behind the alerts (GpuReactorStuckTasks, GpuReactorStaleWorkers) too.
    assert view.queue is not None and view.queue.stuck_tasks == 0
    assert stuck_task_count(snap, SETTINGS, pools) == 0
    assert stale_worker_count(snap, SETTINGS, pools) == 1
