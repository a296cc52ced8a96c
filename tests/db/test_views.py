"""Operator views on a small fleet whose every number is known."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from reactor.db.queries import query

MIN = timedelta(minutes=1)

# id, status, cost_per_hr, created (ago), last heartbeat (ago), terminated (ago)
WORKERS = [
    ("spawn-new", "spawning", "1.0", 1 * MIN, None, None),
    ("spawn-old", "spawning", "1.0", 20 * MIN, None, None),  # past spawning_timeout 900 s
    ("idle", "active", "2.0", 90 * MIN, 1 * MIN, None),
    ("busy", "active", "2.0", 90 * MIN, 1 * MIN, None),  # task 5 min old
    ("stuck", "active", "2.0", 180 * MIN, 1 * MIN, None),  # task 2 h old
    ("stale", "active", "2.0", 90 * MIN, 20 * MIN, None),  # past heartbeat_timeout 600 s
    ("silent", "terminating", "2.0", 90 * MIN, None, None),  # never beat: stale by age
    ("draining", "terminating", "2.0", 90 * MIN, 1 * MIN, None),
    ("gone", "terminated", "3.0", 30 * 60 * MIN, 10 * MIN, 5 * MIN),
    ("crashed", "error", "4.0", 40 * 60 * MIN, 35 * 60 * MIN, 34 * 60 * MIN),
]


@pytest.fixture
async def fleet(conn: asyncpg.Connection) -> datetime:
    now = await conn.fetchval("SELECT now()")
    for wid, status, cost, created, beat, ended in WORKERS:
        await conn.execute(
            """
            INSERT INTO workers (id, status, cost_per_hr, created_at, last_heartbeat,
                                 activated_at, terminated_at)
            VALUES ($1, $2, $3::numeric, $4, $5, $6, $7)
        """,
            wid,
            status,
            cost,
            now - created,
            beat and now - beat,
            None if status == "spawning" or beat is None else now - created + MIN,
            ended and now - ended,
        )
    tasks = [  # status, worker, created (ago), started (ago), processed (ago), updated (ago)
        ("Queued", None, 10 * MIN, None, None, 10 * MIN),
        ("Queued", None, 3 * MIN, None, None, 3 * MIN),
        ("Queued", None, 1 * MIN, None, None, 1 * MIN),
        ("In Progress", "busy", 6 * MIN, 5 * MIN, None, 5 * MIN),
        ("In Progress", "stuck", 121 * MIN, 120 * MIN, None, 120 * MIN),
        ("Complete", "gone", 60 * MIN, 50 * MIN, 50 * MIN - timedelta(seconds=10), 40 * MIN),
        ("Complete", "gone", 60 * MIN, 40 * MIN, 40 * MIN - timedelta(seconds=20), 30 * MIN),
        ("Complete", "idle", 60 * MIN, 30 * MIN, 30 * MIN - timedelta(seconds=30), 20 * MIN),
        ("Failed", "idle", 60 * MIN, 20 * MIN, 19 * MIN, 19 * MIN),
        ("Cancelled", None, 300 * MIN, None, None, 200 * MIN),
    ]
    for status, worker, created, started, processed, updated in tasks:
        await conn.execute(
            """
            INSERT INTO tasks (task_type, status, worker_id, created_at, generation_started_at,
                               generation_processed_at, updated_at)
            VALUES ('render', $1, $2, $3, $4, $5, $6)
        """,
            status,
            worker,
            now - created,
            started and now - started,
            processed and now - processed,
            now - updated,
        )
    return now  # type: ignore[no-any-return]


async def _status(conn: asyncpg.Connection) -> dict:
    row = await conn.fetchrow("SELECT * FROM gpu_reactor.orchestrator_status")
    assert row is not None
    return dict(row)


async def _health(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT worker_id, health FROM gpu_reactor.active_workers_health")
    return {r["worker_id"]: r["health"] for r in rows}


async def test_orchestrator_status_counts(conn: asyncpg.Connection, fleet: datetime) -> None:
    status = await _status(conn)
    assert 590 < status.pop("oldest_queued_age_sec") < 700
    status.pop("observed_at")
    assert status == {
        "queued_tasks": 3,
        "in_progress_tasks": 2,
        "completed_tasks": 3,
        "failed_tasks": 1,
        "cancelled_tasks": 1,
        "spawning_workers": 2,
        "active_workers": 4,
        "terminating_workers": 2,
        "error_workers": 1,
        "stale_workers": 2,
        "stuck_tasks": 1,
    }


async def test_the_dashboard_overview_counts_finished_tasks_of_the_last_hour(
    conn: asyncpg.Connection, fleet: datetime
) -> None:
    row = dict(await conn.fetchrow(query("ops_orchestrator_status")))  # type: ignore[arg-type]
    status = await _status(conn)
    # The cancelled task changed 200 minutes ago: all-time, not in the last hour.
    assert (row["completed_last_hour"], row["failed_last_hour"], row["cancelled_last_hour"]) == (
        3,
        1,
        0,
    ) and status["cancelled_tasks"] == 1
    for key in (
        "queued_tasks",
        "in_progress_tasks",
        "spawning_workers",
        "active_workers",
        "terminating_workers",
        "error_workers",
        "stale_workers",
        "stuck_tasks",
    ):
        assert row[key] == status[key], key


async def test_thresholds_come_from_the_settings_row(
    conn: asyncpg.Connection, fleet: datetime
) -> None:
    await conn.execute("""
        UPDATE gpu_reactor.settings
        SET heartbeat_timeout_sec = 30, task_stuck_timeout_sec = 240, spawning_timeout_sec = 30
    """)
    status = await _status(conn)
    # Every live non-spawning worker last beat over 30 s ago (or, silent, never beat and
    # was created 90 min ago); both running tasks are older than 4 min.
    assert (status["stale_workers"], status["stuck_tasks"]) == (6, 2)
    health = await _health(conn)
    assert health["spawn-new"] == "spawn_overdue"
    assert health["busy"] == "stale"

    await conn.execute("""
        UPDATE gpu_reactor.settings
        SET heartbeat_timeout_sec = 2 * 3600, task_stuck_timeout_sec = 3 * 3600
    """)
    status = await _status(conn)
    assert (status["stale_workers"], status["stuck_tasks"]) == (0, 0)
    health = await _health(conn)
    assert (health["stale"], health["stuck"], health["silent"]) == ("idle", "busy", "draining")


async def test_active_workers_health(conn: asyncpg.Connection, fleet: datetime) -> None:
    assert await _health(conn) == {
        "spawn-new": "starting",
        "spawn-old": "spawn_overdue",
        "idle": "idle",
        "busy": "busy",
        "stuck": "stuck_task",
        "stale": "stale",
        "silent": "stale",
        "draining": "draining",
    }
    busy = await conn.fetchrow(
        "SELECT * FROM gpu_reactor.active_workers_health WHERE worker_id = 'busy'"
    )
    assert busy is not None
    assert busy["current_task_type"] == "render"
    assert 290 < busy["current_task_age_sec"] < 400
    assert 50 < busy["heartbeat_age_sec"] < 200


async def test_the_stale_count_agrees_with_the_health_view(
    conn: asyncpg.Connection, fleet: datetime
) -> None:
    for timeout in (30, 600, 3600, 2 * 3600):
        await conn.execute("UPDATE gpu_reactor.settings SET heartbeat_timeout_sec = $1", timeout)
        stale = sum(1 for h in (await _health(conn)).values() if h == "stale")
        assert (await _status(conn))["stale_workers"] == stale, timeout


async def test_recent_task_activity(conn: asyncpg.Connection, fleet: datetime) -> None:
    rows = await conn.fetch("SELECT * FROM gpu_reactor.recent_task_activity")
    # The last hour only (the stuck task and the Cancelled one changed longer ago), newest first.
    assert [r["status"] for r in rows] == [
        "Queued",
        "Queued",
        "In Progress",
        "Queued",
        "Failed",
        "Complete",
        "Complete",
        "Complete",
    ]
    assert [round(r["processing_sec"]) for r in rows if r["status"] == "Complete"] == [30, 20, 10]


async def test_worker_performance(conn: asyncpg.Connection, fleet: datetime) -> None:
    rows = {
        r["worker_id"]: r for r in await conn.fetch("SELECT * FROM gpu_reactor.worker_performance")
    }
    assert set(rows) == {w[0] for w in WORKERS}
    gone = rows["gone"]
    assert (gone["tasks_completed"], gone["tasks_failed"]) == (2, 0)
    assert round(gone["avg_processing_sec"]) == 15
    assert round(gone["lifetime_sec"]) == (30 * 60 - 5) * 60
    assert gone["cost_usd"] == round(Decimal("3.0") * (30 * 60 - 5) * 60 / 3600, 4)
    idle = rows["idle"]
    assert (idle["tasks_completed"], idle["tasks_failed"]) == (1, 1)
    assert rows["spawn-new"]["tasks_completed"] == 0
    assert rows["spawn-new"]["avg_processing_sec"] is None


async def test_fleet_cost(conn: asyncpg.Connection, fleet: datetime) -> None:
    async with conn.transaction():  # one now() for the view and the expectation
        row = await conn.fetchrow("SELECT *, now() AS now FROM gpu_reactor.fleet_cost")
        midnight = await conn.fetchval(
            "SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        )
    assert row is not None
    live = [w for w in WORKERS if w[1] in ("spawning", "active", "terminating")]
    assert row["live_workers"] == len(live)
    assert row["hourly_burn_usd"] == sum(Decimal(w[2]) for w in live)
    now = row["now"]
    expected = Decimal(0)
    for _, _, cost, created, _, ended in WORKERS:
        start = max(now - created, midnight)
        end = now - ended if ended else now
        if end > start:
            expected += Decimal(cost) * Decimal((end - start).total_seconds()) / 3600
    assert abs(row["spent_today_usd"] - expected) < Decimal("0.001")


async def test_task_types_exempt_from_the_stuck_rule_are_not_stuck_in_the_views(
    conn: asyncpg.Connection, fleet: datetime
) -> None:
    # The reactor writes STUCK_TASK_EXEMPT_TYPES here at start (query sync_settings).
    await conn.execute("UPDATE gpu_reactor.settings SET stuck_task_exempt_types = '{rend%}'")
    assert (await _status(conn))["stuck_tasks"] == 0
    assert (await _health(conn))["stuck"] == "busy"
