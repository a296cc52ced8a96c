"""Drains requested by NOTIFY, honoured only once the sender is known not to be a pod.

Any login may NOTIFY the reactor's channel, a pod's gpu_worker login included; a drain is
carried out only when the sending session is still there to be checked and is not one of
the gpu_worker role. A refusal is logged, counted and shown on /status, with the ways to
ask that are checked by the database itself.
"""

from __future__ import annotations

import logging
import time

from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.pool import GuardedPool
from reactor.db.queries import query
from reactor.engine.metrics import Metrics
from reactor.engine.state import ActionRecord, ReactorState

log = logging.getLogger(__name__)


async def drain_refusal(pool: GuardedPool | None, sender_pid: int | None) -> str | None:
    """Why a drain sent by the session ``sender_pid`` is not honoured, or None."""
    if pool is None or sender_pid is None:
        return "sender unknown"
    try:
        row = await pool.fetchrow(query("drain_sender"), sender_pid)
    except TRANSIENT_DB_ERRORS as exc:
        return f"sender not checked: {exc}"[:200]
    if row is None:
        return "sending session ended before it could be checked"
    if row["is_worker"]:
        return "sent by a gpu_worker login"
    return None


def record_refusal(
    metrics: Metrics, state: ReactorState, worker_id: str, sender_pid: int | None, refused: str
) -> None:
    metrics.refused_drains.labels(
        reason="worker login" if refused.startswith("sent by") else "unverified"
    ).inc()
    log.warning(
        "manual_drain_refused",
        extra={
            "worker_id": worker_id,
            "sender_pid": sender_pid,
            "reason": refused,
            "hint": f"SELECT gpu_reactor.drain('{worker_id}') or gpu-reactor workers drain",
        },
    )
    state.record(
        ActionRecord(
            time.time(), "drain", "refused", "requested by NOTIFY", worker_id, detail=refused
        )
    )
