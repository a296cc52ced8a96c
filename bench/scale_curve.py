"""8. The scale curve: how one reconcile's cost grows with the fleet.

The pure part, ``policy.decide`` + ``policy.next_deadline`` on a snapshot of 10, 100,
1,000 and 10,000 active workers, every one busy with a task, and up to 1,000,000 queued
tasks (the queue is a count in the snapshot; the workers and running tasks are rows).
MAX_ACTIVE_GPUS equals the fleet, so the policy has read everything and spawns nothing:
the worst case for the reading, the common case for a full fleet. The growth ratio is
the time per worker at each size over the time per worker at the smallest: 1 is linear.

The database part: ``read_snapshot`` on a real Postgres holding 10,000 live worker rows,
each with a task In Progress, and the queued tasks.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.common import Context, fmt, render_table, spread, summary
from bench.reconcile_cost import SEED_QUEUED, SEED_RUNNING, SEED_WORKERS
from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.policy import decide, next_deadline
from reactor.engine.collection import collection_paused
from reactor.engine.snapshot import read_snapshot
from reactor.settings import Settings

NAME = "scale_curve"
TARGET_MS = 20.0
FLEETS = (10, 100, 1_000, 10_000)


def busy_fleet(workers: int, queued: int, now: datetime) -> Snapshot:
    """``workers`` active workers, each running one task, and ``queued`` tasks waiting."""
    hour_ago = now - timedelta(hours=1)
    fleet = tuple(
        WorkerState(
            id=f"w{i}",
            status=WorkerStatus.ACTIVE,
            created_at=hour_ago,
            pod_id=f"pod-{i}",
            gpu_type="NVIDIA A40",
            cost_per_hr=0.39,
            activated_at=hour_ago,
            last_heartbeat=now - timedelta(seconds=5),
        )
        for i in range(workers)
    )
    running = tuple(
        TaskState(id=f"t{i}", worker_id=f"w{i}", attempts=1, started_at=now - timedelta(minutes=1))
        for i in range(workers)
    )
    return Snapshot(
        now=now,
        queued=queued,
        in_progress=workers,
        workers=fleet,
        running=running,
        oldest_queued_at=now - timedelta(minutes=10),
    )


def time_decide(workers: int, queued: int, runs: int) -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    settings = Settings(
        DATABASE_URL="postgresql://unused",
        MAX_ACTIVE_GPUS=max(workers, 1),
        TASKS_PER_GPU_THRESHOLD=1,
    )
    ms: list[float] = []
    paused: list[float] = []
    for i in range(2 * runs):  # alternated: as the reactor runs it, and collecting
        snap = busy_fleet(workers, queued, now)  # built outside the timing, as the db does
        started = time.perf_counter()
        with collection_paused() if i % 2 else contextlib.nullcontext():
            decide(snap, settings)
            next_deadline(snap, settings)
        (paused if i % 2 else ms).append((time.perf_counter() - started) * 1000)
    return {**summary(paused), "collecting": summary(ms)}


async def time_snapshot(ctx: Context, workers: int, queued: int, runs: int) -> dict[str, Any]:
    async with ctx.database("bench_scale") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SEED_WORKERS, workers)
            await conn.execute(SEED_RUNNING, workers)
            step = 250_000
            for first in range(0, queued, step):
                await conn.execute(SEED_QUEUED, min(step, queued - first))
            await conn.execute("VACUUM (ANALYZE) tasks")
            await conn.execute("VACUUM (ANALYZE) workers")
            for _ in range(3):
                await read_snapshot(conn)
            ms: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                snap = await read_snapshot(conn)
                ms.append((time.perf_counter() - started) * 1000)
            assert len(snap.workers) == workers
        finally:
            await conn.close()
    return summary(ms)


async def run(ctx: Context) -> dict[str, Any]:
    queued = ctx.size(1_000_000, 1_000_000, 1_000)
    fleets = FLEETS if not ctx.tiny else FLEETS[:3]
    runs = ctx.size(20, 5, 2)
    curve = {n: time_decide(n, queued, runs) for n in fleets}
    db_workers = ctx.size(10_000, 10_000, 100)
    db_queued = ctx.size(1_000_000, 100_000, 1_000)
    db = await time_snapshot(ctx, db_workers, db_queued, ctx.size(10, 5, 2))
    return _report(queued, curve, db_workers, db_queued, db)


def _report(
    queued: int,
    curve: dict[int, dict[str, Any]],
    db_workers: int,
    db_queued: int,
    db: dict[str, Any],
) -> dict[str, Any]:
    first = min(curve)
    base = curve[first]["median"] / first
    rows, growth = [], {}
    for n, stats in curve.items():
        growth[n] = (stats["median"] / n) / base if base else None
        met = n == 10_000 and stats["median"] < TARGET_MS
        target = (f"< {TARGET_MS:g} ms: {'met' if met else 'MISSED'}") if n == 10_000 else ""
        rows.append(
            [
                f"{n:,}",
                spread(stats, 3),
                spread(stats["collecting"], 3),
                fmt(stats["median"] * 1000 / n, 2),
                fmt(growth[n], 2),
                target,
            ]
        )
    table = render_table(
        f"Scale curve: decide + next_deadline, every worker busy, {queued:,} queued; "
        "ms, median (min–max)",
        [
            "workers",
            "as the reactor runs it (gc paused)",
            "with gc collecting",
            "µs per worker",
            "growth (1 = linear)",
            "target",
        ],
        rows,
    )
    table += "\n" + render_table(
        f"Scale curve: read_snapshot on Postgres with {db_workers:,} live workers, "
        f"{db_workers:,} In Progress, {db_queued:,} queued; ms",
        ["part", "median (min–max)"],
        [["snapshot (database time)", spread(db, 1)]],
    )
    largest = max(curve)
    return {
        "name": NAME,
        "sizes": {
            "queued": queued,
            "fleets": list(curve),
            "db_workers": db_workers,
            "db_queued": db_queued,
        },
        "figures": {
            "decide_ms": {str(n): s for n, s in curve.items()},
            "growth_per_worker": {str(n): g for n, g in growth.items()},
            "snapshot_ms": db,
        },
        "target": {
            "what": "decide + next_deadline < 20 ms at 10,000 workers, 1,000,000 queued",
            "value": curve[largest]["median"],
            "met": (curve[largest]["median"] < TARGET_MS) if largest == 10_000 else None,
        },
        "headline": {"decide_ms_at_largest": curve[largest]["median"], "largest": largest},
        "table": table,
    }
