"""What the web console shows, built from what /status shows: pure, data in, data out.

``build_view`` takes the StatusView /status would answer at this moment (so the page and
/status cannot disagree), the console's few shared totals (tasks finished in the last
hour, today's spend, recent tasks, who holds the leader lock) and returns the JSON-able
document every open page receives. ``alerts`` names what an on-call person should look
at first, each in words (a colour is never the only sign).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from reactor.ops.dashboard import BUDGET_NEAR, QUEUE_WAIT_ALERT_SEC
from reactor.ops.observe import age_text
from reactor.ops.status import StatusView
from reactor.settings import Settings

WORKERS_SHOWN = 300  # rows on the page; /status has every one
ENDED_SHOWN_SEC = 900.0  # workers retired this recently are listed under the live ones
START_FAILURES_ALERT = 1
# Most urgent first: the order of the workers table.
HEALTH_ORDER = {
    "stale": 0,
    "stuck_task": 1,
    "spawn_overdue": 2,
    "starting": 3,
    "draining": 4,
    "busy": 5,
    "idle": 6,
}

Level = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class Totals:
    """What the console reads from the database itself, once per interval for all pages."""

    at: float  # unix time of the read
    complete: int = 0
    failed: int = 0
    cancelled: int = 0
    spent_today_usd: float | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)  # ops_recent_tasks rows
    leader: dict[str, Any] | None = None  # the lock's holder (read on a standby only)
    leader_checked: bool = False
    error: str | None = None


def _alert(level: Level, name: str, message: str) -> dict[str, str]:
    return {"level": level, "name": name, "message": message}


def _role_alerts(s: dict[str, Any], totals: Totals | None) -> list[dict[str, str]]:
    out = []
    role = s["role"]
    if role == "standby":
        if totals is not None and totals.leader_checked and totals.leader is None:
            out.append(
                _alert(
                    "critical",
                    "no_leader",
                    f"no reactor holds the leader lock of fleet '{s['fleet']}': "
                    "nothing scales or recovers",
                )
            )
        out.append(
            _alert(
                "info",
                "standby",
                "this replica is a standby: it does not act and has no snapshot; "
                "the leader's own console shows the fleet",
            )
        )
    elif role in ("starting", "stopping"):
        out.append(_alert("warning", role, f"this reactor is {role}"))
    if not s["db_ok"]:
        out.append(_alert("critical", "database", "the database did not answer"))
    lst = s["listener"]
    if role == "leader" and not lst["connected"]:
        why = f" ({lst['last_error']})" if lst["last_error"] else ""
        out.append(
            _alert(
                "critical",
                "listener_down",
                f"the LISTEN connection is down{why}: events wait for the sweep",
            )
        )
    if role == "leader" and lst.get("hint"):
        out.append(_alert("warning", "listener_hint", lst["hint"]))
    return out


def _fleet_alerts(
    s: dict[str, Any], settings: Settings, previous_queued: int | None
) -> list[dict[str, str]]:
    out = []
    workers, q, b = s["workers"], s["queue"], s["budget"]
    stale = [w["id"] for w in workers if w["health"] == "stale"]
    if stale:
        out.append(
            _alert(
                "warning",
                "stale_workers",
                f"{len(stale)} worker(s) with a stale heartbeat: {', '.join(stale[:5])}",
            )
        )
    overdue = [w["id"] for w in workers if w["health"] == "spawn_overdue"]
    if overdue:
        out.append(
            _alert(
                "warning",
                "spawn_overdue",
                f"no first heartbeat within SPAWNING_TIMEOUT_SEC: {', '.join(overdue[:5])}",
            )
        )
    if q and q["stuck_tasks"]:
        out.append(
            _alert(
                "warning",
                "stuck_tasks",
                f"{q['stuck_tasks']} task(s) In Progress longer than TASK_STUCK_TIMEOUT_SEC",
            )
        )
    if q and q.get("blocked_for_good"):
        out.append(
            _alert(
                "warning",
                "blocked_for_good",
                f"{q['blocked_for_good']} queued task(s) wait for a dependency that Failed, "
                "was Cancelled or is gone: they will never run",
            )
        )
    if q:
        due = q.get("claimable", q["queued"] - q["waiting_retry"])
        capacity = sum(1 for w in workers if w["status"] in ("spawning", "active"))
        oldest = q["oldest_queued_age_sec"] or 0.0
        growing = previous_queued is not None and q["queued"] > previous_queued
        if due > 0 and not capacity and (growing or oldest >= QUEUE_WAIT_ALERT_SEC):
            out.append(
                _alert(
                    "critical",
                    "queue_no_capacity",
                    f"{due} task(s) due (oldest {age_text(oldest)}"
                    f"{', growing' if growing else ''}) and no spawning or active worker",
                )
            )
    out += _spawn_alerts(s, settings)
    cap, burn = b["max_hourly_spend_usd"], b["hourly_burn_usd"]
    if cap and burn >= BUDGET_NEAR * cap:
        out.append(
            _alert(
                "warning",
                "budget_near_cap",
                f"burning ${burn:.2f}/h of the ${cap:.2f}/h cap ({burn / cap:.0%})",
            )
        )
    age = s["snapshot_age_sec"]
    if s["role"] == "leader" and age is not None and age > 2 * settings.sweep_interval_sec + 5:
        out.append(
            _alert(
                "critical",
                "snapshot_old",
                f"the reactor's last read of the database is {age_text(age)} old "
                f"(SWEEP_INTERVAL_SEC={settings.sweep_interval_sec:g})",
            )
        )
    return out


def _gate_alerts(gate: dict[str, Any], pool: str = "") -> list[dict[str, str]]:
    """A spawn pause and pods that do not start, from the budget's or one pool's gate."""
    out = []
    where = f"pool {pool}: " if pool else ""
    if gate["spawn_blocked_until"]:
        out.append(
            _alert(
                "warning",
                "spawns_paused",
                f"{where}spawning paused until {gate['spawn_blocked_until']}: "
                f"{gate['spawn_blocked_reason'] or 'no reason recorded'}",
            )
        )
    if gate["worker_start_failures"] >= START_FAILURES_ALERT:
        out.append(
            _alert(
                "warning",
                "workers_do_not_start",
                f"{where}{gate['worker_start_failures']} worker(s) in a row never started "
                "(from 3, one probe pod at a time)",
            )
        )
    return out


def _spawn_alerts(s: dict[str, Any], settings: Settings) -> list[dict[str, str]]:
    """Each pool's own spawn trouble with POOLS_FILE (a broken image in one pool does not
    stop the others); the fleet's, as before pools, without it. Then the tasks no pool
    runs: they wait for good until a pool lists their type."""
    if not settings.pools_file:
        return _gate_alerts(s["budget"])
    out = [a for p in s["pools"] for a in _gate_alerts(p, p["name"])]
    unrouted = s["unrouted"]
    if unrouted["total"]:
        types = ", ".join(f"{n} {t}" for t, n in unrouted["by_type"].items())
        out.append(
            _alert(
                "warning",
                "unrouted_tasks",
                f"{unrouted['total']} queued task(s) of types no pool in POOLS_FILE runs "
                f"({types}): nothing is spawned for them, they wait until a pool lists them",
            )
        )
    return out


def alerts(
    s: dict[str, Any],
    totals: Totals | None,
    settings: Settings,
    previous_queued: int | None = None,
) -> list[dict[str, str]]:
    """What to look at, critical first; ``s`` is a StatusView dumped as JSON."""
    found = _role_alerts(s, totals) + _fleet_alerts(s, settings, previous_queued)
    if totals is not None and totals.error:
        found.append(
            _alert("warning", "console_read", f"the console's own read failed: {totals.error}")
        )
    rank = {"critical": 0, "warning": 1, "info": 2}
    return sorted(found, key=lambda a: rank[a["level"]])


def _workers(s: dict[str, Any]) -> dict[str, Any]:
    workers = sorted(
        s["workers"], key=lambda w: (HEALTH_ORDER.get(w["health"], 9), w["created_at"])
    )
    by_status: dict[str, int] = {}
    by_health: dict[str, int] = {}
    for w in s["workers"]:
        by_status[w["status"]] = by_status.get(w["status"], 0) + 1
        by_health[w["health"]] = by_health.get(w["health"], 0) + 1
    return {
        "total": len(workers),
        "shown": workers[:WORKERS_SHOWN],
        "by_status": by_status,
        "by_health": by_health,
    }


def _ended(status: StatusView) -> list[dict[str, Any]]:
    """Workers retired in the last ENDED_SHOWN_SEC, from the reactor's own actions (newest
    first): a worker that went stale and was replaced stays in sight with its reason."""
    live = {w.id for w in status.workers}
    seen: set[str] = set()
    out = []
    for a in status.actions:
        wid = a.worker_id
        if a.kind != "retire" or not wid or wid in live or wid in seen:
            continue
        if (status.observed_at - a.at).total_seconds() > ENDED_SHOWN_SEC:
            continue
        seen.add(wid)
        out.append({"id": wid, "at": a.at.isoformat(), "reason": a.reason, "detail": a.detail})
    return out


def _totals(totals: Totals | None) -> dict[str, Any] | None:
    if totals is None:
        return None
    return {
        "at": totals.at,
        "complete": totals.complete,
        "failed": totals.failed,
        "cancelled": totals.cancelled,
        "spent_today_usd": totals.spent_today_usd,
        "error": totals.error,
    }


def limits(settings: Settings) -> dict[str, Any]:
    """The settings the page explains its numbers with (nothing secret)."""
    return {
        "MIN_ACTIVE_GPUS": settings.min_active_gpus,
        "MAX_ACTIVE_GPUS": settings.max_active_gpus,
        "TASKS_PER_GPU_THRESHOLD": settings.tasks_per_gpu_threshold,
        "MACHINES_TO_KEEP_IDLE": settings.machines_to_keep_idle,
        "MAX_HOURLY_SPEND_USD": settings.max_hourly_spend_usd,
        "GPU_IDLE_TIMEOUT_SEC": settings.gpu_idle_timeout_sec,
        "TASK_STUCK_TIMEOUT_SEC": settings.task_stuck_timeout_sec,
        "SPAWNING_TIMEOUT_SEC": settings.spawning_timeout_sec,
        "SWEEP_INTERVAL_SEC": settings.sweep_interval_sec,
    }


def build_view(
    status: StatusView,
    totals: Totals | None,
    settings: Settings,
    *,
    version: str,
    previous_queued: int | None = None,
) -> dict[str, Any]:
    """The document every open console page receives (``state`` events)."""
    s = status.model_dump(mode="json")
    observed = status.observed_at.timestamp()
    return {
        "fleet": s["fleet"],
        "role": s["role"],
        "leader": totals.leader if totals is not None and totals.leader_checked else None,
        "leader_checked": bool(totals and totals.leader_checked),
        "provider": s["provider"],
        "version": version,
        "host": s["host"],
        "pid": s["pid"],
        "started_at": s["started_at"],
        "uptime_sec": s["uptime_sec"],
        "observed_at": s["observed_at"],
        "observed_unix": observed,
        "snapshot_at": s["snapshot_at"],
        "snapshot_age_sec": s["snapshot_age_sec"],
        "db_ok": s["db_ok"],
        "limits": limits(settings),
        "queue": s["queue"],
        "finished_last_hour": _totals(totals),
        "budget": s["budget"],
        "workers": _workers(s),
        "routed": bool(settings.pools_file),  # POOLS_FILE: the pools view is shown
        "pools": s["pools"],
        "unrouted": s["unrouted"],
        "ended": _ended(status),
        "actions": s["actions"],
        "recent_tasks": totals.recent if totals is not None else [],
        "listener": s["listener"],
        "reconcile": s["reconcile"],
        "alerts": alerts(s, totals, settings, previous_queued),
    }
