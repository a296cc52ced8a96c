"""What the drill-down pages say about one worker or one task: pure, escaped HTML pieces.

A database row (console_worker, console_task) is joined with what only this reactor's
memory holds: its last snapshot (health as the policy judges it), the last sweep's pod
list, its recent actions and the task holders it saw (reactor/engine/history.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reactor.engine.state import ReactorState
from reactor.http.console_html import e, facts_html, task_link, worker_link
from reactor.ops.observe import age_text
from reactor.ops.status import judged_by, worker_health
from reactor.ops.status_pools import pools_of
from reactor.settings import Settings

HEALTH_WORDS = {
    "stale": "stale: no heartbeat within GPU_IDLE_TIMEOUT_SEC",
    "stuck_task": "stuck task: In Progress longer than TASK_STUCK_TIMEOUT_SEC",
    "spawn_overdue": "spawn overdue: no first heartbeat within SPAWNING_TIMEOUT_SEC",
    "starting": "starting: waiting for its first heartbeat",
    "draining": "draining: finishes its task, takes no new one",
    "busy": "busy",
    "idle": "idle",
}


def _ts(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _health(worker_id: str, state: ReactorState, settings: Settings) -> str:
    snap = state.snapshot
    worker = snap.worker(worker_id) if snap else None
    if snap is None or worker is None:
        return e("not live in this reactor's last snapshot")
    own = judged_by(worker, state.pools, settings)
    health = worker_health(worker, snap.tasks_of(worker_id), own, snap.now)
    return (
        f'<span class="health h-{e(health)}">{e(HEALTH_WORDS.get(health, health))}</span>'
        f" (as of the snapshot at {e(snap.now)})"
    )


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{e(moment)} ({e(age_text((now - moment).total_seconds()))} ago)"


def _pool(row: dict[str, Any], state: ReactorState, settings: Settings) -> str:
    """The worker's GPU pool (workers.pool), as the pools in force read it."""
    name = row["pool"]
    pools = pools_of(state, settings)
    pool = pools.pool_named(name)
    if pool is None:
        return f"{e(name)} (no longer in POOLS_FILE: it drains)"
    types = ", ".join(pool.patterns)
    return f'<span class="mono">{e(pool.name)}</span> (runs {e(types)})'


def worker_facts(row: dict[str, Any], state: ReactorState, settings: Settings) -> list[Any]:
    now = row["db_now"]
    reason = row["error_reason"] or row["drain_reason"]
    return [
        ("status", f'<span class="status s-{e(row["status"])}">{e(row["status"])}</span>'),
        ("health", _health(row["id"], state, settings)),
        ("pool", _pool(row, state, settings)),
        ("GPU type", e(row["gpu_type"])),
        ("cost", e(f"${row['cost_per_hr']:.4f}/h")),
        ("managed", e("yes: its pod is the reactor's" if row["managed"] else "no: registered")),
        ("pod", e(row["pod_id"])),
        ("created", _ago(row["created_at"], now)),
        ("first heartbeat", _ago(row["activated_at"], now)),
        ("last heartbeat", _ago(row["last_heartbeat"], now)),
        ("last task finished", _ago(row["last_task_finished_at"], now)),
        ("ended", _ago(row["terminated_at"], now)),
        ("why it ended or drains", e(reason)),
    ]


def worker_pod(row: dict[str, Any], state: ReactorState) -> str:
    """The pod as the provider listed it at the last sweep (never its env)."""
    history = state.history
    pod = history.pods.get(row["pod_id"]) if row["pod_id"] else None
    if history.pods_at is None:
        return "<p class='empty'>No sweep has listed the provider's pods yet.</p>"
    when = e(_ts(history.pods_at))
    if pod is None:
        what = "has no pod id" if not row["pod_id"] else "had no pod in the provider's list"
        return f"<p class='empty'>This worker {e(what)} at the sweep of {when}.</p>"
    return facts_html(
        [
            ("pod id", e(pod.id)),
            ("name", e(pod.name)),
            ("status at the provider", e(pod.status)),
            ("GPU type", e(pod.gpu_type)),
            ("cost", e(f"${pod.cost_per_hr:.4f}/h")),
            ("created", e(pod.created_at)),
            ("as listed at", when),
        ]
    )


def worker_timeline(row: dict[str, Any], state: ReactorState) -> list[list[str]]:
    """Its status changes from the row's timestamps, and the reactor's actions about it."""
    events: list[tuple[datetime, str, str]] = [
        (row["created_at"], "spawning: intent written", row["spawn_reason"] or ""),
    ]
    if row["activated_at"]:
        events.append((row["activated_at"], "active: first heartbeat", ""))
    if row["draining_since"]:
        events.append((row["draining_since"], "terminating: drain asked", row["drain_reason"]))
    if row["drained_at"]:
        events.append((row["drained_at"], "reported drained", ""))
    if row["terminated_at"]:
        why = row["error_reason"] if row["status"] == "error" else row["drain_reason"]
        events.append((row["terminated_at"], f"{row['status']}: ended", why or ""))
    for a in state.actions:
        if a.worker_id == row["id"]:
            what = f"reactor: {a.kind} ({a.outcome})"
            events.append((_ts(a.at), what, f"{a.reason}; {a.detail}" if a.detail else a.reason))
    events.sort(key=lambda ev: ev[0])
    return [[e(at), e(what), e(why)] for at, what, why in events]


def worker_seen_tasks(worker_id: str, state: ReactorState) -> list[list[str]]:
    return [
        [task_link(task_id), e(h.attempt), e(h.started_at), e(_ts(h.first_seen))]
        for task_id, h in state.history.tasks_held_by(worker_id)
    ]


def task_facts(row: dict[str, Any]) -> list[Any]:
    now = row["db_now"]
    started, processed = row["generation_started_at"], row["generation_processed_at"]
    took = f"{(processed - started).total_seconds():.1f}s" if started and processed else None
    retry = row["retry_at"]
    waits = retry is not None and retry > now and row["status"] == "Queued"
    status_class = row["status"].replace(" ", "_")
    return [
        ("type", f'<span class="mono">{e(row["task_type"])}</span>'),
        ("status", f'<span class="status t-{e(status_class)}">{e(row["status"])}</span>'),
        ("attempts", e(f"{row['attempts']} of {row['max_attempts']}")),
        ("priority", e(row["priority"])),
        ("worker", worker_link(row["worker_id"])),
        ("created", _ago(row["created_at"], now)),
        ("last change", _ago(row["updated_at"], now)),
        ("last attempt started", _ago(started, now)),
        ("last attempt ended", _ago(processed, now)),
        ("last attempt took", e(took)),
        ("next attempt not before", _ago(retry, now) if waits else "-"),
        (
            "why it was requeued or failed",
            f'<pre class="error">{e(row["error_message"])}</pre>',
        ),
    ]


def task_holders(row: dict[str, Any], state: ReactorState) -> list[list[str]]:
    """The holders this reactor saw, then the row's worker if it is not among them."""
    seen = state.history.holders(row["id"])
    rows = [
        [worker_link(h.worker_id), e(h.attempt), e(h.started_at), e(_ts(h.first_seen))]
        for h in seen
    ]
    last = row["worker_id"]
    if last and not any(h.worker_id == last and h.attempt == row["attempts"] for h in seen):
        rows.append(
            [worker_link(last), e(row["attempts"]), e(row["generation_started_at"]), e(None)]
        )
    return rows


def task_related_actions(row: dict[str, Any], state: ReactorState) -> list[list[str]]:
    """The reactor's recent actions on the workers that held it, or naming it."""
    holders = {h.worker_id for h in state.history.holders(row["id"])}
    if row["worker_id"]:
        holders.add(row["worker_id"])
    found = [
        a
        for a in state.actions
        if (a.worker_id in holders and a.kind in ("retire", "drain", "requeue_task"))
        or row["id"] in a.reason
    ]
    return [
        [e(_ts(a.at)), e(a.kind), e(a.outcome), worker_link(a.worker_id), e(a.reason), e(a.detail)]
        for a in reversed(found)
    ]
