"""The demo's closing summary: what happened, read back from the database and the metrics.

``read_run`` reads this run's tasks and workers; the rest is pure: reaction latency per
burst, quantiles of the reactor's own histogram, per GPU pool the pods it ran, the task
types its workers completed and their GPU-seconds and cost, and the text a person reads at
the end (``render``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Histogram

from reactor.demo.pools_view import WORKER_POOL
from reactor.demo.workload import QueuedBurst, WorkloadRecord
from reactor.domain.globs import matches_any

REACTION_WINDOW_SEC = 10.0  # a spawn later than this after a burst is not its reaction

RUN_TASKS = """
SELECT status::text AS status, count(*) AS tasks,
       count(*) FILTER (WHERE attempts > 1) AS retried
FROM tasks WHERE params ->> 'demo_run' = $1
GROUP BY status
"""
TASK = """
SELECT status::text AS status, attempts, worker_id FROM tasks WHERE id = $1::uuid
"""
RUN_WORKERS = f"""
SELECT id, status, pod_id, created_at, activated_at, terminated_at,
       coalesce(error_reason, drain_reason) AS reason, metadata ->> 'spawn_reason' AS spawn_reason,
       {WORKER_POOL} AS pool, gpu_type, cost_per_hr
FROM workers w
WHERE created_at >= $1 AND id LIKE $2 || '-%'
ORDER BY created_at
"""
# Who completed each of this run's tasks: its type, and the pool and GPU of its worker.
RUN_RAN = f"""
SELECT t.task_type, {WORKER_POOL} AS pool, w.gpu_type, count(*) AS tasks
FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id
WHERE t.params ->> 'demo_run' = $1 AND t.status = 'Complete'
GROUP BY 1, 2, 3
ORDER BY 2, 1
"""


async def read_run(
    conn: asyncpg.Connection, run_id: str, fleet: str, started: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """This run's tasks by status, its workers, and who completed which task types."""
    tasks = [dict(r) for r in await conn.fetch(RUN_TASKS, run_id)]
    workers = [dict(r) for r in await conn.fetch(RUN_WORKERS, started, fleet)]
    ran = [dict(r) for r in await conn.fetch(RUN_RAN, run_id)]
    return tasks, workers, ran


# --- pure parts -------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of a small sample."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def histogram_bound(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile, from cumulative (le, count) pairs:
    a bound that holds, where interpolating inside a wide bucket would only look precise."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    return next(upper for upper, count in buckets if count >= rank)


def histogram_buckets(histogram: Histogram) -> list[tuple[float, float]]:
    out = []
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                out.append((float(sample.labels["le"]), sample.value))
    return sorted(out)


def burst_reactions(bursts: list[QueuedBurst], spawns: list[datetime]) -> list[dict[str, Any]]:
    """For each burst that caused a spawn: seconds from its insert to the first spawn."""
    out = []
    ordered = sorted(spawns)
    for i, burst in enumerate(bursts):
        until = bursts[i + 1].at if i + 1 < len(bursts) else None
        first = next(
            (
                s
                for s in ordered
                if s >= burst.at
                and (until is None or s < until)
                and (s - burst.at).total_seconds() <= REACTION_WINDOW_SEC
            ),
            None,
        )
        if first is not None:
            out.append(
                {
                    "burst": burst.label,
                    "tasks": burst.tasks,
                    "seconds": round((first - burst.at).total_seconds(), 6),
                }
            )
    return out


def peak_live(workers: list[dict[str, Any]], ended_at: datetime) -> int:
    moments = []
    for w in workers:
        moments.append((w["created_at"], 1))
        moments.append((w["terminated_at"] or ended_at, -1))
    live = peak = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
        live += step
        peak = max(peak, live)
    return peak


def gpu_seconds(workers: list[dict[str, Any]], ended_at: datetime) -> float:
    return sum(
        ((w["terminated_at"] or ended_at) - w["created_at"]).total_seconds() for w in workers
    )


def usd(workers: list[dict[str, Any]], ended_at: datetime) -> float:
    """What the workers cost: each one's GPU-seconds at its own cost_per_hr."""
    return sum(
        gpu_seconds([w], ended_at) / 3600 * float(w.get("cost_per_hr") or 0.0) for w in workers
    )


def pool_summary(
    pools: dict[str, dict[str, Any]],
    workers: list[dict[str, Any]],
    ran: list[dict[str, Any]],
    ended_at: datetime,
) -> list[dict[str, Any]]:
    """Per pool of the demo's POOLS_FILE: its pods, the task types its workers completed
    (``misrouted``: tasks of a type it does not run) and their GPU-seconds and cost."""
    out = []
    for name, table in pools.items():
        mine = [w for w in workers if w["pool"] == name]
        done = [r for r in ran if r["pool"] == name]
        patterns = list(table.get("task_types") or ["*"])
        by_type = Counter[str]()
        for r in done:
            by_type[r["task_type"]] += r["tasks"]
        out.append(
            {
                "pool": name,
                "task_types": patterns,
                "gpu_type": next(iter(table.get("runpod_gpu_types") or []), None),
                "usd_per_gpu_hour": table.get("gpu_hourly_price_usd"),
                "max_active_gpus": table.get("max_active_gpus"),
                "pods": len(mine),
                "peak_live": peak_live(mine, ended_at),
                "gpu_types_seen": sorted({w["gpu_type"] or "-" for w in mine}),
                "ran": dict(by_type.most_common()),
                "misrouted": sum(n for t, n in by_type.items() if not matches_any(patterns, t)),
                "gpu_seconds": round(gpu_seconds(mine, ended_at), 1),
                "usd": round(usd(mine, ended_at), 4),
            }
        )
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def build_summary(
    *,
    record: WorkloadRecord,
    tasks: list[dict[str, Any]],
    workers: list[dict[str, Any]],
    ran: list[dict[str, Any]],
    killed_task: dict[str, Any] | None,
    reaction_buckets: list[tuple[float, float]],
    settings: dict[str, Any],
    pools: dict[str, dict[str, Any]],
    started_at: datetime,
    ended_at: datetime,
    processes: dict[str, Any],
) -> dict[str, Any]:
    by_status = {t["status"]: t["tasks"] for t in tasks}
    ended = [w for w in workers if w["terminated_at"] is not None]
    reasons = Counter((w["status"], w["reason"] or "") for w in ended)
    reactions = burst_reactions(record.bursts, [w["created_at"] for w in workers])
    samples = [r["seconds"] for r in reactions]
    run_sec = (ended_at - started_at).total_seconds()
    used, spent = gpu_seconds(workers, ended_at), usd(workers, ended_at)
    by_pool = pool_summary(pools, workers, ran, ended_at)
    # Every pool kept at its max for the whole run, at its price.
    always_on = run_sec / 3600 * sum(p["max_active_gpus"] * p["usd_per_gpu_hour"] for p in by_pool)
    n_reactions = reaction_buckets[-1][1] if reaction_buckets else 0
    return {
        "run_id": record.run_id,
        "duration_sec": round(run_sec, 1),
        "settings": settings,
        "pools": by_pool,
        "tasks": {
            "queued": sum(b.tasks for b in record.bursts),
            "complete": by_status.get("Complete", 0),
            "failed": by_status.get("Failed", 0),
            "open": by_status.get("Queued", 0) + by_status.get("In Progress", 0),
            "retried": sum(t["retried"] for t in tasks),
            "by_status": by_status,
        },
        "bursts": [{"label": b.label, "tasks": b.tasks, "at": b.at} for b in record.bursts],
        "workers": {
            "spawned": len(workers),
            "ended": len(ended),
            "peak_live": peak_live(workers, ended_at),
            "ended_by_reason": [
                {"status": s, "reason": r, "workers": n} for (s, r), n in reasons.most_common()
            ],
            "rows": workers,
        },
        "killed": _killed(record, killed_task),
        "reaction_latency": {
            "insert_to_spawn": {
                "what": "task insert commit -> spawn intent row, per burst that needed a worker",
                "n": len(samples),
                "p50_ms": _ms(quantile(samples, 0.5)),
                "p99_ms": _ms(quantile(samples, 0.99)),
                "bursts": reactions,
            },
            "reactor_histogram": {
                "what": "NOTIFY received -> first action sent "
                "(gpu_reactor_reaction_latency_seconds), bucket "
                "upper bounds",
                "n": int(n_reactions),
                "p50_le_ms": _ms(histogram_bound(reaction_buckets, 0.5)),
                "p99_le_ms": _ms(histogram_bound(reaction_buckets, 0.99)),
            },
        },
        "cost": {
            "gpu_seconds": round(used, 1),
            "usd": round(spent, 4),
            "always_on_max_gpus": sum(p["max_active_gpus"] for p in by_pool),
            "always_on_max_usd": round(always_on, 4),
            "saved_share": round(1 - spent / always_on, 3) if always_on else None,
        },
        "processes": processes,
        "notes": record.notes,
    }


def _killed(record: WorkloadRecord, task: dict[str, Any] | None) -> dict[str, Any] | None:
    kill = record.kill
    if kill is None:
        return {"skipped": record.kill_skipped or "the run ended before act two"}
    out = asdict(kill)
    if kill.detected_at is not None:
        out["detected_after_sec"] = round((kill.detected_at - kill.at).total_seconds(), 2)
    if kill.replacement_at is not None:
        out["replacement_after_sec"] = round((kill.replacement_at - kill.at).total_seconds(), 2)
    out["task"] = task
    return out


# --- text -----------------------------------------------------------------------------


def _latency_line(data: dict[str, Any]) -> str:
    if not data["n"]:
        return "no samples"
    if "p50_le_ms" in data:
        return (
            f"p50 <= {_bound(data['p50_le_ms'])}, p99 <= {_bound(data['p99_le_ms'])} "
            f"(n={data['n']})"
        )
    return f"p50 {data['p50_ms']:.1f} ms, p99 {data['p99_ms']:.1f} ms (n={data['n']})"


def _bound(ms: float) -> str:
    return "+Inf" if math.isinf(ms) else f"{ms:g} ms"


def _killed_lines(killed: dict[str, Any] | None) -> list[str]:
    if killed is None or "skipped" in killed:
        return [f"  failure    not staged: {(killed or {}).get('skipped', '-')}"]
    lines = [
        f"  failure    {killed['worker_id']} (pid {killed['pid']}) killed with SIGKILL "
        f"during task {killed['task_id'][:8]}"
    ]
    if killed.get("detected_after_sec") is not None:
        lines.append(
            f"             -> '{killed['status']}' after {killed['detected_after_sec']:.1f}s: "
            f"{killed['reason']}"
        )
    if killed.get("replacement"):
        lines.append(
            f"             -> replacement {killed['replacement']} spawned "
            f"{killed['replacement_after_sec']:.1f}s after the kill"
        )
    task = killed.get("task")
    if task:
        lines.append(
            f"             -> its task: {task['status']} on attempt {task['attempts']}"
            f" by {task['worker_id']}"
        )
    return lines


def _pool_lines(pools: list[dict[str, Any]]) -> list[str]:
    """``big    video on 'H100 80GB' at $2.69/h: 3 pods (at most 1 at once), ran 10 video; ...``"""
    lines = []
    for i, p in enumerate(pools):
        ran = ", ".join(f"{n} {kind}" for kind, n in p["ran"].items()) or "no task"
        wrong = f" ({p['misrouted']} of a type it does not run!)" if p["misrouted"] else ""
        lines.append(
            f"  {'pools' if i == 0 else '':<11}{p['pool']:<6} {', '.join(p['task_types'])} on "
            f"{p['gpu_type']!r} at ${p['usd_per_gpu_hour']:.2f}/h: {p['pods']} pods (at most "
            f"{p['peak_live']} at once), ran {ran}{wrong}; {p['gpu_seconds']:.0f} GPU-s, "
            f"${p['usd']:.4f}"
        )
    return lines


def render(summary: dict[str, Any]) -> str:
    t, w, c = summary["tasks"], summary["workers"], summary["cost"]
    lat = summary["reaction_latency"]
    lines = [
        f"gpu-reactor demo: summary of {summary['duration_sec']:.0f}s",
        f"  tasks      {t['queued']} queued, {t['complete']} complete, {t['failed']} failed, "
        f"{t['open']} still open; {t['retried']} retried after losing a worker",
        f"  workers    {w['spawned']} spawned (at most {w['peak_live']} at once), "
        f"{w['ended']} ended:",
    ]
    for group in w["ended_by_reason"]:
        lines.append(
            f"             {group['workers']:>3} x {group['status']:<10} {group['reason']}"
        )
    lines += _pool_lines(summary["pools"])
    lines += _killed_lines(summary["killed"])
    lines += [
        f"  reaction   task insert -> spawn: {_latency_line(lat['insert_to_spawn'])}",
        f"             NOTIFY -> first action (reactor histogram): "
        f"{_latency_line(lat['reactor_histogram'])}",
        f"  cost       ${c['usd']:.4f} for {c['gpu_seconds']:.0f} GPU-seconds ("
        + ", ".join(f"{p['pool']} ${p['usd']:.4f}" for p in summary["pools"])
        + ")",
    ]
    if c["saved_share"] is not None:
        lines.append(
            f"             every pool at its max ({c['always_on_max_gpus']} GPUs) for the "
            f"same {summary['duration_sec']:.0f}s: ${c['always_on_max_usd']:.4f}; "
            f"scaling with the queue spent {c['saved_share']:.0%} less"
        )
    p = summary["processes"]
    lines.append(f"  processes  {len(p['started'])} started, {len(p['left_running'])} left running")
    lines += [f"  note       {note}" for note in summary["notes"]]
    return "\n".join(lines)
