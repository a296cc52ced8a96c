"""migrate adopts a seed system's existing tasks table without touching its rows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from reactor.db.migrate import load_migrations, migrate
from tests.db.support import add_worker, claim
from tests.pg import PgServer

SEED_SCHEMA = """
CREATE TYPE task_status AS ENUM ('Queued', 'In Progress', 'Complete', 'Failed');
CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    task_type text NOT NULL,
    params jsonb,
    status task_status NOT NULL DEFAULT 'Queued',
    worker_id text,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    generation_started_at timestamptz,
    generation_processed_at timestamptz,
    result_data jsonb,
    output_location text
);
INSERT INTO tasks (id, task_type, params, status, worker_id, created_at,
                   generation_started_at, generation_processed_at, result_data, output_location)
VALUES
  ('00000000-0000-0000-0000-000000000001', 'render', '{"prompt": "old"}', 'Complete', 'pod-a',
   '2024-01-01 10:00+00', '2024-01-01 10:01+00', '2024-01-01 10:02+00', '{"ok": true}',
   's3://bucket/1.png'),
  ('00000000-0000-0000-0000-000000000002', 'render', '{"prompt": "first"}', 'Queued', NULL,
   '2024-01-02 10:00+00', NULL, NULL, NULL, NULL),
  ('00000000-0000-0000-0000-000000000003', 'upscale', '{"prompt": "second"}', 'Queued', NULL,
   '2024-01-03 10:00+00', NULL, NULL, NULL, NULL),
  ('00000000-0000-0000-0000-000000000004', 'render', '{"prompt": "busy"}', 'In Progress',
   'pod-b', '2024-01-01 11:00+00', '2024-01-01 11:01+00', NULL, NULL, NULL),
  ('00000000-0000-0000-0000-000000000005', 'render', NULL, 'Failed', 'pod-c',
   '2024-01-01 12:00+00', NULL, NULL, NULL, 's3://bucket/5.log');
"""
SEED_COLUMNS = (
    "id",
    "task_type",
    "params",
    "status",
    "worker_id",
    "created_at",
    "generation_started_at",
    "generation_processed_at",
    "result_data",
    "output_location",
)


@pytest.fixture
async def seed(pg_server: PgServer) -> AsyncIterator[asyncpg.Connection]:
    name = await pg_server.create_empty_database()
    connection = await asyncpg.connect(pg_server.dsn(name))
    await connection.execute(SEED_SCHEMA)
    yield connection
    await connection.close()
    await pg_server.drop_database(name)


async def _seed_rows(conn: asyncpg.Connection) -> list[dict]:
    rows = await conn.fetch(f"SELECT {', '.join(SEED_COLUMNS)} FROM tasks ORDER BY id")
    return [dict(r) for r in rows]


async def test_migrate_adopts_the_seed_table(seed: asyncpg.Connection) -> None:
    before = await _seed_rows(seed)

    applied = await migrate(seed)
    assert len(applied) == len(load_migrations())
    assert await _seed_rows(seed) == before

    new = await seed.fetch("SELECT attempts, max_attempts, priority, error_message FROM tasks")
    assert {tuple(r) for r in new} == {(0, 3, 0, None)}
    labels = await seed.fetchval("SELECT enum_range(NULL::task_status)::text[]")
    assert labels == ["Queued", "In Progress", "Complete", "Failed", "Cancelled"]

    # A new row gets every default, including the id the seed table had none for.
    new_id = await seed.fetchval("INSERT INTO tasks (task_type) VALUES ('render') RETURNING id")
    fresh = await seed.fetchrow("SELECT * FROM tasks WHERE id = $1", new_id)
    assert (fresh["status"], fresh["attempts"], fresh["max_attempts"]) == ("Queued", 0, 3)
    await seed.execute("UPDATE tasks SET status = 'Cancelled' WHERE id = $1", new_id)

    assert await migrate(seed) == []


async def test_claim_and_fencing_work_on_the_seed_rows(seed: asyncpg.Connection) -> None:
    await migrate(seed)
    await add_worker(seed, "w1")
    first = await claim(seed, "w1")
    second = await claim(seed, "w1")
    assert first is not None and second is not None
    assert str(first["id"]).endswith("2") and json.loads(first["params"]) == {"prompt": "first"}
    assert str(second["id"]).endswith("3") and first["attempts"] == 1
    assert await claim(seed, "w1") is None

    assert await seed.fetchval("SELECT func_mark_task_complete($1, '{}', 'w1', 1)", first["id"])
    # The seed's own In Progress row is fenced like any other.
    busy = "00000000-0000-0000-0000-000000000004"
    assert not await seed.fetchval(
        "SELECT func_mark_task_complete($1::uuid, '{}', 'w1', NULL)", busy
    )
    rows = await seed.fetch("SELECT task_id, new_status FROM func_reset_orphaned_tasks('{pod-b}')")
    assert [(str(r["task_id"]), r["new_status"]) for r in rows] == [(busy, "Queued")]
    row = await seed.fetchrow(
        "SELECT output_location, status FROM tasks WHERE id = $1", first["id"]
    )
    assert tuple(row) == (None, "Complete")


async def test_every_file_can_run_again_on_the_adopted_table(seed: asyncpg.Connection) -> None:
    await migrate(seed)
    before = await _seed_rows(seed)
    for migration in load_migrations():
        async with seed.transaction():
            await seed.execute(migration.sql)
    assert await _seed_rows(seed) == before


# The seed system also shipped its own functions and views under the names gpu-reactor
# uses, with other arguments and return types, plus a workers table of its own.
SEED_FUNCTIONS_AND_VIEWS = """
CREATE TABLE workers (
    id text PRIMARY KEY,
    instance_type text,
    status text NOT NULL DEFAULT 'active',
    last_heartbeat timestamptz,
    metadata jsonb DEFAULT '{}'::jsonb,
    created_at timestamptz DEFAULT now()
);
INSERT INTO workers (id, instance_type, status, last_heartbeat)
VALUES ('pod-a', 'external', 'terminated', '2024-01-01 10:05+00'),
       ('pod-b', 'external', 'active', now());

CREATE FUNCTION func_claim_available_task(worker_id_param text)
RETURNS TABLE (id uuid, status text) LANGUAGE sql AS $$
    UPDATE tasks SET status = 'In Progress', worker_id = worker_id_param
    WHERE tasks.id = (SELECT t.id FROM tasks t WHERE t.status = 'Queued'
                      ORDER BY t.created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING tasks.id, tasks.status::text;
$$;
CREATE FUNCTION func_mark_task_complete(task_id_param uuid, result_data_param jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    UPDATE tasks SET status = 'Complete', result_data = result_data_param WHERE id = task_id_param;
$$;
CREATE FUNCTION func_mark_task_failed(task_id_param uuid, error_message_param text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    UPDATE tasks SET status = 'Failed' WHERE id = task_id_param;
$$;
CREATE FUNCTION func_reset_orphaned_tasks(failed_worker_ids text[])
RETURNS integer LANGUAGE sql AS $$
    WITH r AS (UPDATE tasks SET status = 'Queued', worker_id = NULL
               WHERE worker_id = ANY (failed_worker_ids) AND status = 'In Progress' RETURNING 1)
    SELECT count(*)::int FROM r;
$$;
CREATE FUNCTION func_update_worker_heartbeat(
    worker_id_param text, vram_total_mb_param int DEFAULT NULL, vram_used_mb_param int DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    UPDATE workers SET last_heartbeat = now() WHERE id = worker_id_param;
$$;

CREATE VIEW orchestrator_status AS
SELECT count(*) FILTER (WHERE status = 'Queued') AS queued_tasks,
       count(*) FILTER (WHERE status = 'In Progress') AS running_tasks
FROM tasks;
CREATE VIEW active_workers_health AS
SELECT id, status, last_heartbeat FROM workers WHERE status = 'active';
"""

OUR_FUNCTIONS = (
    "func_claim_available_task",
    "func_mark_task_complete",
    "func_mark_task_failed",
    "func_reset_orphaned_tasks",
    "func_update_worker_heartbeat",
)


async def test_migrate_replaces_the_seeds_functions_and_views(seed: asyncpg.Connection) -> None:
    await seed.execute(SEED_FUNCTIONS_AND_VIEWS)
    before = await _seed_rows(seed)

    await migrate(seed)
    assert await _seed_rows(seed) == before
    overloads = await seed.fetch(
        """
        SELECT proname, count(*) AS n FROM pg_proc
        WHERE proname = ANY ($1::text[]) AND pronamespace = current_schema()::regnamespace
        GROUP BY proname""",
        list(OUR_FUNCTIONS),
    )
    assert {r["proname"]: r["n"] for r in overloads} == dict.fromkeys(OUR_FUNCTIONS, 1)

    # Every call a gpu-reactor worker or reactor makes resolves to ours, unambiguously.
    assert await seed.fetchval("SELECT func_update_worker_heartbeat('pod-b')") == "active"
    assert (
        await seed.fetchval("SELECT func_update_worker_heartbeat($1, $2)", "pod-b", "{}")
        == "active"
    )
    row = await seed.fetchrow("SELECT * FROM func_claim_available_task('pod-b')")
    assert row is not None and row["attempts"] == 1
    assert (
        await seed.fetchval("SELECT func_mark_task_complete($1, $2, $3)", row["id"], "{}", "pod-b")
        is True
    )
    row = await seed.fetchrow("SELECT * FROM func_claim_available_task($1, $2)", "pod-b", None)
    assert row is not None
    assert (
        await seed.fetchval("SELECT func_mark_task_failed($1, 'oom', 'pod-b')", row["id"]) is True
    )
    reset = await seed.fetch("SELECT * FROM func_reset_orphaned_tasks($1::text[])", ["pod-b"])
    assert [(str(r["task_id"]), r["new_status"]) for r in reset] == [
        ("00000000-0000-0000-0000-000000000004", "Queued")
    ]

    status = await seed.fetchrow("SELECT * FROM orchestrator_status")
    assert status is not None and status["stuck_tasks"] == 0
    health = await seed.fetch("SELECT worker_id, health FROM active_workers_health")
    assert [r["worker_id"] for r in health] == ["pod-b"]
    workers = await seed.fetch("SELECT id, status, instance_type FROM workers ORDER BY id")
    assert [tuple(r) for r in workers] == [
        ("pod-a", "terminated", "external"),
        ("pod-b", "active", "external"),
    ]

    assert await migrate(seed) == []
