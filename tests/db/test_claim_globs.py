"""Task type globs in the claim and in the reactor's counts (0016), and workers.pool."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from reactor.db.queries import query
from reactor.engine.snapshot import read_snapshot
from tests.db.support import add_task, add_worker, claim

TYPES = ["wan_2_1", "wan_", "wanx", "flux_x", "travel_orchestrator", "travelXorchestrator"]


async def _claim_all(conn: asyncpg.Connection, task_types: list[str] | None) -> set[str]:
    claimed = set()
    while (row := await claim(conn, "w1", task_types)) is not None:
        claimed.add(row["task_type"])
    return claimed


@pytest.mark.parametrize(
    ("task_types", "claimed"),
    [
        (["wan_*"], {"wan_2_1", "wan_"}),
        (["wan?2?1"], {"wan_2_1"}),
        # A plain name is exactly that name: its _ is no LIKE wildcard.
        (["travel_orchestrator"], {"travel_orchestrator"}),
        (["*_orchestrator", "flux_?"], {"travel_orchestrator", "flux_x"}),
        (["*"], set(TYPES)),
        (None, set(TYPES)),
        ([], set()),
        (["WAN_*"], set()),
    ],
)
async def test_a_claim_takes_the_types_its_globs_match(
    conn: asyncpg.Connection, task_types: list[str] | None, claimed: set[str]
) -> None:
    await add_worker(conn, "w1")
    for task_type in TYPES:
        await add_task(conn, task_type=task_type)
    assert await _claim_all(conn, task_types) == claimed


async def test_a_glob_claim_keeps_priority_then_age_order(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1")
    old = await add_task(conn, task_type="wan_a")
    await add_task(conn, task_type="flux_x", priority=9)
    high = await add_task(conn, task_type="wan_b", priority=5)
    first, second = await claim(conn, "w1", ["wan_*"]), await claim(conn, "w1", ["wan_*"])
    assert first is not None and second is not None
    assert (first["id"], second["id"]) == (high, old)


async def test_queue_counts_other_types_and_ready_by_type_read_globs(
    conn: asyncpg.Connection,
) -> None:
    done = await add_task(conn, task_type="wan_2_1", status="Complete")
    for task_type in ("wan_2_1", "wan_2_1", "wan_14b", "flux_x", "travel_orchestrator"):
        await add_task(conn, task_type=task_type)
    await add_task(conn, task_type="wan_2_1", dependant_on=[done])  # ready: it is Complete
    waiting = await add_task(conn, task_type="flux_x")
    await add_task(conn, task_type="wan_2_1", dependant_on=[waiting])  # blocked
    # Not due yet: neither counted as another type's nor ready.
    await add_task(conn, task_type="flux_x", retry_at=datetime.now(UTC) + timedelta(hours=1))

    snap = await read_snapshot(conn, task_types=["wan_*"])
    assert (snap.other_types, snap.blocked_waiting, snap.blocked_for_good) == (3, 1, 0)
    assert (await read_snapshot(conn, task_types=["*"])).other_types == 0
    # Every due task of another type, blocked or not (a plain name: exactly that type).
    assert (await read_snapshot(conn, task_types=["travel_orchestrator"])).other_types == 7
    rows = await conn.fetch(query("ready_by_type"))
    assert {r["task_type"]: r["ready"] for r in rows} == {
        "wan_2_1": 3,
        "wan_14b": 1,
        "flux_x": 2,
        "travel_orchestrator": 1,
    }


@pytest.mark.parametrize("pool", ["video-80gb", None])
async def test_a_spawn_intent_records_its_pool_and_the_live_workers_say_it(
    conn: asyncpg.Connection, pool: str | None
) -> None:
    await conn.execute(query("insert_spawn_intent"), "w1", 0.5, "demand", None, pool)
    (row,) = await conn.fetch(query("live_workers"))
    assert (row["id"], row["status"], row["pool"]) == ("w1", "spawning", pool)
    (health,) = await conn.fetch(query("ops_workers_health"))
    assert health["pool"] == pool
    for name in ("ops_worker", "console_worker"):
        assert (await conn.fetchrow(query(name), "w1"))["pool"] == pool
    reason = await conn.fetchval("SELECT metadata ->> 'spawn_reason' FROM workers")
    assert reason == "demand"


async def test_the_claim_converts_its_globs_once_and_inlines_the_rule(
    conn: asyncpg.Connection,
) -> None:
    # What the claim's body plans to (its arguments are parameters: a generic plan).
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(
        "PREPARE c(text[]) AS SELECT t.id FROM public.tasks t WHERE t.status = 'Queued'"
        " AND gpu_reactor.claimable_like(t, (SELECT gpu_reactor.like_patterns($1)))"
        " ORDER BY t.priority DESC, t.created_at LIMIT 1"
    )
    plan = json.loads(
        await conn.fetchval("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE c(ARRAY['wan_*'])")
    )
    text = json.dumps(plan)
    assert "claimable" not in text, "the rule was not inlined"
    assert text.count("like_patterns") == 1 and '"InitPlan"' in text
    assert "~~ ANY" in text  # LIKE ANY, on the InitPlan's patterns
