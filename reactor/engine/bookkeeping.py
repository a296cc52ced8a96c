"""The actions that only write the database: drain, requeue a stuck task or orphaned ones,
attach a pod found by name, and the row half of a retire. Each returns its record (the
retire: how many tasks it requeued); the executor runs them (reactor/engine/executor.py).
"""

from __future__ import annotations

import logging
import time

from reactor.db.pool import GuardedPool
from reactor.db.queries import query
from reactor.domain.actions import AttachPod, Drain, RequeueOrphans, RequeueTask, Retire
from reactor.engine.metrics import Metrics
from reactor.engine.state import ActionRecord

log = logging.getLogger(__name__)


async def drain(pool: GuardedPool, metrics: Metrics, action: Drain) -> ActionRecord:
    result = await pool.execute(query("mark_drain"), action.worker_id, action.reason)
    changed = result.endswith(" 1")
    if changed:
        metrics.drains.inc()
        log.info("drain_requested", extra={"worker_id": action.worker_id, "reason": action.reason})
    return ActionRecord(
        time.time(), "drain", "ok" if changed else "skipped", action.reason, action.worker_id
    )


async def retire_row(pool: GuardedPool, metrics: Metrics, action: Retire) -> int:
    """Mark the worker's row ended and requeue its tasks, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(query("retire_worker"), action.worker_id, action.status, action.reason)
        requeued = await conn.fetch(query("reset_orphaned_tasks"), [action.worker_id])
    for row in requeued:
        metrics.tasks_requeued.labels(reason=action.cause).inc()
        log.info(
            "task_requeued",
            extra={
                "worker_id": action.worker_id,
                "task_id": str(row["task_id"]),
                "new_status": row["new_status"],
                "reason": action.cause,
            },
        )
    metrics.terminations.labels(reason=action.cause).inc()
    return len(requeued)


async def requeue_task(pool: GuardedPool, metrics: Metrics, action: RequeueTask) -> ActionRecord:
    status = await pool.fetchval(
        query("requeue_task"), action.task_id, action.worker_id, action.attempt, action.reason
    )
    if status is not None:
        metrics.tasks_requeued.labels(reason=action.cause).inc()
        log.warning(
            "task_requeued",
            extra={
                "task_id": action.task_id,
                "worker_id": action.worker_id,
                "new_status": status,
                "reason": action.cause,
            },
        )
    return ActionRecord(
        time.time(),
        "requeue_task",
        "ok" if status else "skipped",
        action.reason,
        action.worker_id,
        detail=str(status or "moved on"),
    )


async def requeue_orphans(
    pool: GuardedPool, metrics: Metrics, action: RequeueOrphans
) -> ActionRecord:
    rows = await pool.fetch(query("reset_orphaned_tasks"), list(action.worker_ids))
    for row in rows:
        metrics.tasks_requeued.labels(reason=action.cause).inc()
        log.warning(
            "task_requeued",
            extra={
                "task_id": str(row["task_id"]),
                "new_status": row["new_status"],
                "reason": action.cause,
            },
        )
    return ActionRecord(
        time.time(), "requeue_orphans", "ok", action.reason, detail=f"{len(rows)} task(s)"
    )


async def attach_pod(pool: GuardedPool, action: AttachPod) -> ActionRecord:
    await pool.execute(query("attach_pod"), action.worker_id, action.pod_id)
    log.info("pod_attached", extra={"worker_id": action.worker_id, "pod_id": action.pod_id})
    return ActionRecord(
        time.time(), "attach_pod", "ok", "pod found by name", action.worker_id, action.pod_id
    )
