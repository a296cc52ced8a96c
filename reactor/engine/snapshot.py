"""Read one consistent snapshot of the queue and the fleet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from reactor.db.queries import query
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC, ARRIVALS_COUNTED
from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.pods import Pod
from reactor.engine.demand import DemandReader


def _worker(row: asyncpg.Record) -> WorkerState:
    return WorkerState(
        id=row["id"],
        status=WorkerStatus(row["status"]),
        created_at=row["created_at"],
        pod_id=row["pod_id"],
        managed=row["managed"],
        pool=row["pool"],
        gpu_type=row["gpu_type"],
        cost_per_hr=float(row["cost_per_hr"]),
        activated_at=row["activated_at"],
        last_heartbeat=row["last_heartbeat"],
        draining_since=row["draining_since"],
        last_task_finished_at=row["last_task_finished_at"],
        drained_at=row["drained_at"],
    )


def _task(row: asyncpg.Record) -> TaskState:
    return TaskState(
        id=str(row["id"]),
        worker_id=row["worker_id"],
        attempts=row["attempts"],
        started_at=row["generation_started_at"],
        task_type=row["task_type"],
    )


async def read_snapshot(
    conn: asyncpg.Connection,
    pods: Sequence[Pod] | None = None,
    *,
    arm: bool = True,
    task_types: Sequence[str] = (),
    demand: DemandReader | None = None,
    by_type: bool = False,
    pool_demand: Mapping[str, DemandReader] | None = None,
) -> Snapshot:
    """Arm the doorbell, then read counts, live workers and running tasks in one
    repeatable-read transaction. Arming first means any task queued after this read
    rings the bell, and anything queued before it is in the snapshot. ``task_types`` are
    those the fleet runs (empty: all); ``demand`` runs DEMAND_SQL where it is set;
    ``by_type`` also counts the claimable tasks of each type (routing between pools, and
    what no pool runs); ``pool_demand`` runs each pool's own demand_sql."""
    if arm:
        await conn.execute(query("arm_doorbell"))
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counts = await conn.fetchrow(query("queue_counts"), list(task_types) or None)
        workers = await conn.fetch(query("live_workers"))
        running = await conn.fetch(query("running_tasks"))
        demand_sql = await demand.read(conn) if demand is not None else None
        ready = await conn.fetch(query("ready_by_type")) if by_type else None
        answers = [(name, await r.read(conn)) for name, r in (pool_demand or {}).items()]
        arrived = await conn.fetchrow(
            query("recent_arrivals"), ARRIVAL_WINDOW_SEC, list(task_types) or None, ARRIVALS_COUNTED
        )
    return Snapshot(
        now=counts["db_now"],
        queued=counts["queued"],
        in_progress=counts["in_progress"],
        oldest_queued_at=counts["oldest_queued_at"],
        waiting=counts["waiting"],
        next_retry_at=counts["next_retry_at"],
        other_types=counts["other_types"],
        blocked_for_good=counts["blocked_for_good"],
        blocked_waiting=counts["blocked_waiting"],
        demand_sql=demand_sql,
        ready_by_type=None if ready is None else tuple((r[0], r[1]) for r in ready),
        pool_demand=tuple((name, n) for name, n in answers if n is not None),
        workers=tuple(_worker(r) for r in workers),
        running=tuple(_task(r) for r in running),
        pods=tuple(pods) if pods is not None else None,
        arrivals=arrived["arrivals"],
        arrivals_since=arrived["arrivals_since"],
    )
