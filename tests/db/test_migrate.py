"""migrate: schema.sql on a fresh database, the numbered files on an older one, and the
proof that both end in the same place (sql/schema.sql is the truth)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from reactor.db.migrate import (
    _PIN_SEARCH_PATH,
    OWN_SCHEMA_VERSION,
    Install,
    check_schema,
    install_state,
    load_migrations,
    load_schema,
    migrate,
    plan,
)
from reactor.db.sqlsplit import split_statements
from reactor.errors import SchemaError
from tests.pg import PgServer

# Everything gpu-reactor owns or adds: its schema, and its columns, indexes, triggers and
# constraints on the shared tables. Column order is left out: a table 0001 made and one
# schema.sql made list the same columns in another order.
FINGERPRINT = """
SELECT 'column' AS kind, table_schema || '.' || table_name || '.' || column_name || ':'
       || data_type || ':' || coalesce(column_default, '') || ':' || is_nullable AS item
FROM information_schema.columns
WHERE table_schema = 'gpu_reactor'
   OR (table_schema = 'public' AND table_name IN ('tasks', 'workers'))
UNION ALL
SELECT 'index', schemaname || '.' || indexname || ':' || indexdef FROM pg_indexes
WHERE schemaname = 'gpu_reactor' OR (schemaname = 'public' AND tablename IN ('tasks', 'workers'))
UNION ALL
SELECT 'function', p.oid::regprocedure::text || ':' || pg_get_function_result(p.oid)
       || ':' || md5(p.prosrc) || ':' || p.prosecdef || ':' || p.provolatile::text || ':'
       || coalesce(p.proconfig::text, '') || ':' || coalesce(p.proacl::text, '')
       || ':' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p WHERE p.pronamespace = 'gpu_reactor'::regnamespace
UNION ALL
SELECT 'trigger', tgrelid::regclass::text || ':' || pg_get_triggerdef(oid)
FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'relation', c.relname || ':' || c.relkind::text || ':' || coalesce(c.relacl::text, '')
       || ':' || coalesce(pg_get_viewdef(c.oid), '') || ':'
       || coalesce(obj_description(c.oid, 'pg_class'), '')
FROM pg_class c WHERE c.relnamespace = 'gpu_reactor'::regnamespace AND c.relkind IN ('r', 'v', 'S')
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ':' || conname || ':' || pg_get_constraintdef(oid)
FROM pg_constraint
WHERE connamespace = 'gpu_reactor'::regnamespace
   OR conrelid IN ('public.tasks'::regclass, 'public.workers'::regclass)
UNION ALL
SELECT 'public function', p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'public relation', c.relname FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')
UNION ALL
SELECT 'enum', string_agg(e.enumlabel, ',' ORDER BY e.enumlabel) FROM pg_enum e
WHERE e.enumtypid = 'public.task_status'::regtype
UNION ALL
SELECT 'schema acl', coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'gpu_reactor'
ORDER BY 1, 2
"""

DATA = """
SELECT 'settings', to_jsonb(s) - 'updated_at' FROM gpu_reactor.settings s
UNION ALL SELECT 'doorbell', to_jsonb(d) - 'armed_at' FROM gpu_reactor.doorbell d
UNION ALL SELECT 'tasks', to_jsonb(t) FROM public.tasks t
UNION ALL SELECT 'workers', to_jsonb(w) FROM public.workers w
UNION ALL SELECT 'breaker', to_jsonb(b) - 'updated_at' FROM gpu_reactor.spawn_breaker b
ORDER BY 1, 2
"""


async def _fingerprint(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    return [(r["kind"], r["item"]) for r in await conn.fetch(FINGERPRINT)]


@pytest.fixture
async def empty(pg_server: PgServer) -> AsyncIterator[asyncpg.Connection]:
    name = await pg_server.create_empty_database()
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        yield conn
    finally:
        await conn.close()
        await pg_server.drop_database(name)


async def _as_the_last_release_did(conn: asyncpg.Connection) -> None:
    """0001-0014 in public, as gpu-reactor 0.1 ran them, with some rows of each kind."""
    await conn.execute(
        "CREATE TABLE gpu_reactor_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for m in load_migrations():
        if m.version >= OWN_SCHEMA_VERSION:
            break
        async with conn.transaction():
            await conn.execute(_PIN_SEARCH_PATH)
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO gpu_reactor_migrations VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
    await conn.execute(
        "INSERT INTO workers (id, status, managed, pod_id) VALUES ('w1', 'active', true, 'p1')"
    )
    await conn.execute("INSERT INTO workers (id, status, managed) VALUES ('w2', 'active', false)")
    await conn.execute("INSERT INTO tasks (task_type, priority) VALUES ('render', 2)")
    await conn.execute("UPDATE gpu_reactor_settings SET heartbeat_timeout_sec = 42")
    await conn.execute(
        "INSERT INTO gpu_reactor_spawn_breaker (fleet, start_failures) VALUES ('f', 2)"
    )


async def test_a_fresh_migrate_is_schema_sql_and_records_every_file(
    empty: asyncpg.Connection,
) -> None:
    assert await install_state(empty) is Install.FRESH
    assert await migrate(empty) == [load_schema().label]
    recorded = await empty.fetch("SELECT version, checksum FROM gpu_reactor.migrations")
    assert {r["version"]: r["checksum"] for r in recorded} == {
        m.version: m.checksum for m in load_migrations()
    }
    await check_schema(empty)
    before = await _fingerprint(empty)
    assert await migrate(empty) == []
    assert await _fingerprint(empty) == before


async def test_a_database_of_the_last_release_upgrades_to_what_schema_sql_makes(
    pg_server: PgServer, empty: asyncpg.Connection
) -> None:
    await _as_the_last_release_did(empty)
    assert await install_state(empty) is Install.LEGACY
    rows_before = await empty.fetch(
        "SELECT to_jsonb(t) - 'updated_at' AS t FROM tasks t UNION ALL"
        " SELECT to_jsonb(w) FROM workers w ORDER BY 1"
    )

    assert await migrate(empty) == ["0015_own_schema", "0016_pools"]
    await check_schema(empty)
    fresh = await pg_server.create_empty_database()
    other = await asyncpg.connect(pg_server.dsn(fresh))
    try:
        await migrate(other)
        assert await _fingerprint(empty) == await _fingerprint(other)
    finally:
        await other.close()
        await pg_server.drop_database(fresh)

    # The rows stay (dependant_on, lost_attempts and pool are new).
    rows_after = await empty.fetch(
        "SELECT to_jsonb(t) - 'updated_at' - 'dependant_on' - 'lost_attempts' AS t"
        " FROM public.tasks t UNION ALL"
        " SELECT to_jsonb(w) - 'pool' FROM public.workers w ORDER BY 1"
    )
    assert [r[0] for r in rows_after] == [r[0] for r in rows_before]
    assert await empty.fetchval("SELECT heartbeat_timeout_sec FROM gpu_reactor.settings") == 42
    assert await empty.fetchval("SELECT start_failures FROM gpu_reactor.spawn_breaker") == 2
    versions = await empty.fetch("SELECT version FROM gpu_reactor.migrations ORDER BY 1")
    assert [r[0] for r in versions] == [m.version for m in load_migrations()]


async def test_every_step_can_run_again(empty: asyncpg.Connection) -> None:
    # An interrupted migrate runs a file again from its start: none may depend on the
    # ledger to be safe.
    await migrate(empty)
    await empty.execute("INSERT INTO public.workers (id, status) VALUES ('w1', 'active')")
    await empty.execute("INSERT INTO public.tasks (task_type, priority) VALUES ('render', 2)")
    await empty.execute("UPDATE gpu_reactor.settings SET heartbeat_timeout_sec = 42")
    schema, data = await _fingerprint(empty), await empty.fetch(DATA)
    for migration in (load_schema(), load_migrations()[-1]):
        for _, sql in migration.segments:
            await empty.execute(sql)
    assert await _fingerprint(empty) == schema
    assert await empty.fetch(DATA) == data


async def test_concurrent_migrations_take_turns(pg_server: PgServer) -> None:
    name = await pg_server.create_empty_database()
    conns = [await asyncpg.connect(pg_server.dsn(name)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 1]
        await check_schema(conns[0])
    finally:
        for c in conns:
            await c.close()
        await pg_server.drop_database(name)


async def test_check_schema_refuses_an_unmigrated_database(empty: asyncpg.Connection) -> None:
    with pytest.raises(SchemaError, match="gpu-reactor migrate"):
        await check_schema(empty)


async def test_the_plan_lists_every_statement_and_changes_nothing(
    empty: asyncpg.Connection,
) -> None:
    before = await empty.fetch("SELECT nspname FROM pg_namespace ORDER BY 1")
    state, steps = await plan(empty)
    assert state is Install.FRESH
    assert await empty.fetch("SELECT nspname FROM pg_namespace ORDER BY 1") == before
    assert [s.sql for s in steps] == [
        s for _, sql in load_schema().segments for s in split_statements(sql)
    ]
    concurrent = [s.sql for s in steps if not s.in_transaction]
    assert concurrent and all("CONCURRENTLY" in s for s in concurrent)
    await migrate(empty)
    assert (await plan(empty))[1] == []


async def test_an_index_an_interrupted_build_left_invalid_is_built_again(
    empty: asyncpg.Connection,
) -> None:
    await migrate(empty)
    # What a cancelled CREATE INDEX CONCURRENTLY leaves behind.
    await empty.execute(
        "UPDATE pg_index SET indisvalid = false"
        " WHERE indexrelid = 'public.gpu_reactor_tasks_claim_idx'::regclass"
    )
    await empty.execute("DELETE FROM gpu_reactor.migrations")  # as if never recorded
    await migrate(empty)
    assert await empty.fetchval(
        "SELECT indisvalid FROM pg_index"
        " WHERE indexrelid = 'public.gpu_reactor_tasks_claim_idx'::regclass"
    )


async def test_an_app_whose_dependencies_are_not_uuids_is_told_so_and_nothing_changes(
    empty: asyncpg.Connection,
) -> None:
    await empty.execute("CREATE TABLE public.tasks (id uuid PRIMARY KEY, dependant_on text)")
    with pytest.raises(asyncpg.RaiseError, match="dependant_on is text, not uuid"):
        await migrate(empty)
    assert await empty.fetchval("SELECT to_regnamespace('gpu_reactor')") is None


async def test_a_status_check_that_is_no_list_is_left_to_the_operator_and_nothing_changes(
    empty: asyncpg.Connection,
) -> None:
    await empty.execute(
        "CREATE TABLE public.workers (id text PRIMARY KEY, status text"
        " CONSTRAINT workers_status_check CHECK (status <> 'gone'))"
    )
    with pytest.raises(asyncpg.RaiseError, match="widen it by hand"):
        await migrate(empty)
    assert await empty.fetchval("SELECT to_regnamespace('gpu_reactor')") is None
