"""Hot-path queries touch only Queued / In Progress rows and live workers (partial indexes).

A table full of finished tasks (and a fleet's worth of terminated workers) is the normal
state of a long-running system; the plans below must not scan it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from reactor.db.queries import query
from tests.pg import PgServer

FINISHED, QUEUED, RUNNING, DEAD_WORKERS, LIVE_WORKERS = 50_000, 300, 200, 5_000, 20
CLAIM_IDX = "gpu_reactor_tasks_claim_idx"
RUNNING_IDX = "gpu_reactor_tasks_held_idx"
LIVE_IDX = "gpu_reactor_workers_live_idx"
RETRY_IDX = "gpu_reactor_tasks_retry_idx"


async def _load(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"""
            INSERT INTO workers (id, status, created_at, terminated_at)
            SELECT 'dead-' || g, 'terminated', now() - interval '2 days', now() - interval '1 day'
            FROM generate_series(1, {DEAD_WORKERS}) g;
            INSERT INTO workers (id, status, last_heartbeat)
            SELECT 'live-' || g, CASE WHEN g % 5 = 0 THEN 'spawning' ELSE 'active' END, now()
            FROM generate_series(1, {LIVE_WORKERS}) g;
            INSERT INTO tasks (task_type, params, status, priority, worker_id, attempts,
                               created_at, updated_at, generation_started_at,
                               generation_processed_at)
            SELECT CASE WHEN g % 3 = 0 THEN 'upscale' ELSE 'render' END,
                   jsonb_build_object('n', g),
                   CASE WHEN g <= {FINISHED} THEN 'Complete'
                        WHEN g <= {FINISHED + RUNNING} THEN 'In Progress'
                        ELSE 'Queued' END::task_status,
                   g % 4,
                   CASE WHEN g <= {FINISHED} THEN 'dead-' || (g % {DEAD_WORKERS} + 1)
                        WHEN g <= {FINISHED + RUNNING} THEN 'live-' || (g % {LIVE_WORKERS} + 1)
                        END,
                   CASE WHEN g <= {FINISHED + RUNNING} THEN 1 ELSE 0 END,
                   now() - make_interval(secs => {FINISHED + RUNNING + QUEUED} - g),
                   now() - make_interval(secs => {FINISHED + RUNNING + QUEUED} - g),
                   CASE WHEN g <= {FINISHED + RUNNING} THEN now() END,
                   CASE WHEN g <= {FINISHED} THEN now() END
            FROM generate_series(1, {FINISHED + RUNNING + QUEUED}) g;
            ANALYZE tasks;
            ANALYZE workers;
        """)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def busy_dsn(pg_server: PgServer) -> Iterator[str]:
    """One database for the module: the plans are only read, and loading takes a while."""
    name = asyncio.run(pg_server.create_database())
    dsn = pg_server.dsn(name)
    asyncio.run(_load(dsn))
    yield dsn
    asyncio.run(pg_server.drop_database(name))


@pytest.fixture
async def busy(busy_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(busy_dsn)
    # The plan a LANGUAGE sql function gets: its arguments are parameters, not values.
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    yield conn
    await conn.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    name = f"q{abs(hash(sql))}"
    types = await _param_types(conn, sql, len(args))
    await conn.execute(
        f"PREPARE {name}({', '.join(types)}) AS {sql}" if types else f"PREPARE {name} AS {sql}"
    )
    try:
        literal_args = ", ".join(_literal(a) for a in args)
        raw = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE {name}" + (f"({literal_args})" if args else "")
        )
    finally:
        await conn.execute(f"DEALLOCATE {name}")
    return list(_nodes(json.loads(raw)[0]["Plan"]))


async def _param_types(conn: asyncpg.Connection, sql: str, count: int) -> list[str]:
    if count == 0:
        return []
    statement = await conn.prepare(sql)
    return [
        t.name if t.schema == "pg_catalog" else f"{t.schema}.{t.name}"
        for t in statement.get_parameters()
    ]


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    return "'" + str(value).replace("'", "''") + "'"


def _scans(nodes: list[dict[str, Any]], relation: str) -> list[tuple[str, str | None]]:
    """(node type, index) of every scan of ``relation``; a bitmap scan names its indexes."""
    scans = []
    for node in nodes:
        if node.get("Relation Name") != relation or node["Node Type"] == "ModifyTable":
            continue
        if node["Node Type"] == "Bitmap Heap Scan":
            scans += [
                (node["Node Type"], child.get("Index Name"))
                for child in _nodes(node)
                if child["Node Type"] == "Bitmap Index Scan"
            ]
        else:
            scans.append((node["Node Type"], node.get("Index Name")))
    return scans


def _assert_uses(nodes: list[dict[str, Any]], relation: str, *indexes: str) -> None:
    scans = _scans(nodes, relation)
    assert scans, f"no scan of {relation}"
    assert not any(kind == "Seq Scan" for kind, _ in scans), scans
    assert any(name in indexes for _, name in scans), scans


async def _function_body(conn: asyncpg.Connection, name: str) -> str:
    """The SQL of a LANGUAGE sql function, its named arguments as $1, $2 ..."""
    row = await conn.fetchrow(
        """
        SELECT p.prosrc, p.proargnames, p.proargmodes::text[] AS modes,
               p.proargtypes::regtype[]::text[] AS types
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.oid = $1::regproc AND l.lanname = 'sql'
    """,
        name,
    )
    assert row is not None, f"{name} is not a LANGUAGE sql function"
    modes = row["modes"] or ["i"] * len(row["types"])
    inputs = [n for n, m in zip(row["proargnames"], modes, strict=True) if m in ("i", "b", "v")]
    body = row["prosrc"].strip().rstrip(";")
    for i, (arg, typ) in enumerate(zip(inputs, row["types"], strict=True), start=1):
        body = re.sub(rf"\b{arg}\b", f"${i}::{typ}", body)
    return body


async def test_claim_uses_the_queued_index(busy: asyncpg.Connection) -> None:
    body = await _function_body(busy, "gpu_reactor.func_claim_available_task")
    for task_types in (None, ["render"], ["rend*"]):
        nodes = await _plan(busy, body, "live-1", task_types)
        _assert_uses(nodes, "tasks", CLAIM_IDX)
        assert all(name != RUNNING_IDX for _, name in _scans(nodes, "tasks"))


async def test_recent_arrivals_reads_only_the_rows_touched_in_the_window(
    busy: asyncpg.Connection,
) -> None:
    for task_types in (None, ["render"]):
        nodes = await _plan(busy, query("recent_arrivals"), 300.0, task_types, 10_000)
        _assert_uses(nodes, "tasks", "gpu_reactor_tasks_updated_idx")


@pytest.mark.parametrize(
    ("name", "indexes"),
    [
        ("gpu_reactor.func_reset_orphaned_tasks", [RUNNING_IDX]),
        ("gpu_reactor.func_mark_task_complete", ["tasks_pkey", RUNNING_IDX]),
        ("gpu_reactor.func_mark_task_failed", ["tasks_pkey", RUNNING_IDX]),
        ("gpu_reactor.func_requeue_task", ["tasks_pkey", RUNNING_IDX]),
    ],
)
async def test_the_other_task_functions_use_an_index(
    busy: asyncpg.Connection, name: str, indexes: list[str]
) -> None:
    body = await _function_body(busy, name)
    params = await busy.fetchval("SELECT pronargs FROM pg_proc WHERE oid = $1::regproc", name)
    nodes = await _plan(busy, body, *([None] * params))
    _assert_uses(nodes, "tasks", *indexes)


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT count(*) FROM tasks WHERE status = 'Queued'", CLAIM_IDX),
        ("SELECT count(*) FROM tasks WHERE status = 'In Progress'", RUNNING_IDX),
        ("SELECT min(created_at) FROM tasks WHERE status = 'Queued'", CLAIM_IDX),
        (
            "SELECT id, attempts FROM tasks WHERE status = 'In Progress' AND worker_id = $1",
            RUNNING_IDX,
        ),
    ],
)
async def test_queue_counts_and_running_by_worker_use_partial_indexes(
    busy: asyncpg.Connection, sql: str, index: str
) -> None:
    args = ["live-3"] if "$1" in sql else []
    _assert_uses(await _plan(busy, sql, *args), "tasks", index)


@pytest.mark.parametrize(
    ("name", "relation", "index"),
    [
        ("queue_counts", "tasks", CLAIM_IDX),
        ("queue_counts", "tasks", RUNNING_IDX),
        ("queue_counts", "tasks", RETRY_IDX),
        ("queue_counts", "tasks", "gpu_reactor_tasks_dependent_idx"),
        ("ready_by_type", "tasks", CLAIM_IDX),
        ("running_tasks", "tasks", RUNNING_IDX),
        ("live_workers", "workers", LIVE_IDX),
    ],
)
async def test_the_reactors_named_queries_use_partial_indexes(
    busy: asyncpg.Connection, name: str, relation: str, index: str
) -> None:
    args = [["render"]] if name == "queue_counts" else []  # the fleet's task types
    _assert_uses(await _plan(busy, query(name), *args), relation, index)


async def test_the_dashboard_overview_reads_no_finished_task_beyond_the_last_hour(
    busy: asyncpg.Connection,
) -> None:
    # Refreshed every few seconds: the view's all-time finished counts are left out.
    scans = _scans(await _plan(busy, query("ops_orchestrator_status")), "tasks")
    assert scans and not any(kind == "Seq Scan" for kind, _ in scans), scans
    assert ("Index Scan", "gpu_reactor_tasks_updated_idx") in scans or (
        "Bitmap Heap Scan",
        "gpu_reactor_tasks_updated_idx",
    ) in scans, scans


async def test_live_workers_by_status_uses_the_live_index(busy: asyncpg.Connection) -> None:
    sql = "SELECT id FROM workers WHERE status IN ('spawning', 'active', 'terminating')"
    _assert_uses(await _plan(busy, sql), "workers", LIVE_IDX)
