from __future__ import annotations

import asyncio

import asyncpg

from reactor.db.migrate import _PIN_SEARCH_PATH, check_schema, load_migrations, migrate
from tests.pg import PgServer


async def _schema_fingerprint(conn: asyncpg.Connection) -> list[tuple]:
    rows = await conn.fetch("""
        SELECT 'column' AS kind, table_name || '.' || column_name || ':' || data_type
               || ':' || coalesce(column_default, '') || ':' || is_nullable AS item
        FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'index', indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'function', p.oid::regprocedure::text || ':' || pg_get_function_result(p.oid)
               || ':' || md5(p.prosrc) || ':' || p.prosecdef || ':'
               || coalesce(p.proconfig::text, '') || ':' || coalesce(p.proacl::text, '')
               || ':' || coalesce(obj_description(p.oid, 'pg_proc'), '')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'trigger', tgname || ':' || tgrelid::regclass::text || ':' || pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT 'relation',
               c.relname || ':' || c.relkind::text || ':' || coalesce(c.relacl::text, '')
               || ':' || coalesce(pg_get_viewdef(c.oid), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm')
        UNION ALL
        SELECT 'constraint', conrelid::regclass::text || ':' || conname || ':'
               || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'enum', t.typname || ':' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid GROUP BY t.typname
        ORDER BY 1, 2
    """)
    return [tuple(r) for r in rows]


async def _data_fingerprint(conn: asyncpg.Connection) -> list[tuple]:
    rows = await conn.fetch("""
        SELECT 'settings', to_jsonb(s) - 'updated_at' FROM gpu_reactor_settings s
        UNION ALL SELECT 'doorbell', to_jsonb(d) - 'armed_at' FROM gpu_reactor_doorbell d
        UNION ALL SELECT 'tasks', to_jsonb(t) FROM tasks t
        UNION ALL SELECT 'workers', to_jsonb(w) FROM workers w
        UNION ALL SELECT 'breaker', to_jsonb(b) FROM gpu_reactor_spawn_breaker b
        ORDER BY 1, 2
    """)
    return [tuple(r) for r in rows]


async def test_fresh_migrate_applies_every_file_and_second_run_changes_nothing(
    pg_server: PgServer,
) -> None:
    name = await pg_server.create_empty_database()
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        first = await migrate(conn)
        assert len(first) == len(load_migrations())
        before = await _schema_fingerprint(conn)
        second = await migrate(conn)
        assert second == []
        assert await _schema_fingerprint(conn) == before
        await check_schema(conn)
        recorded = await conn.fetchval("SELECT count(*) FROM gpu_reactor_migrations")
        assert recorded == len(load_migrations())
    finally:
        await conn.close()
        await pg_server.drop_database(name)


async def test_concurrent_migrations_take_turns(pg_server: PgServer) -> None:
    name = await pg_server.create_empty_database()
    conns = [await asyncpg.connect(pg_server.dsn(name)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(len(r) for r in results)
        assert applied == [0, 0, len(load_migrations())]
    finally:
        for c in conns:
            await c.close()
        await pg_server.drop_database(name)


async def test_check_schema_refuses_an_unmigrated_database(pg_server: PgServer) -> None:
    from reactor.errors import SchemaError

    name = await pg_server.create_empty_database()
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        try:
            await check_schema(conn)
        except SchemaError as exc:
            assert "gpu-reactor migrate" in str(exc)
        else:
            raise AssertionError("check_schema accepted an empty database")
    finally:
        await conn.close()
        await pg_server.drop_database(name)


async def test_every_file_is_idempotent_on_its_own(conn: asyncpg.Connection) -> None:
    # The ledger makes a second migrate a no-op; the files must not depend on it, because
    # adopting an existing database runs them over objects that already exist.
    await conn.execute("INSERT INTO workers (id, status) VALUES ('w1', 'active')")
    await conn.execute("INSERT INTO tasks (task_type, priority) VALUES ('render', 2)")
    await conn.execute("UPDATE gpu_reactor_settings SET heartbeat_timeout_sec = 42")
    await conn.execute(
        "INSERT INTO gpu_reactor_spawn_breaker (fleet, start_failures) VALUES ('f', 2)"
    )
    schema, data = await _schema_fingerprint(conn), await _data_fingerprint(conn)
    for migration in load_migrations():
        async with conn.transaction():
            await conn.execute(_PIN_SEARCH_PATH)
            await conn.execute(migration.sql)
    assert await _schema_fingerprint(conn) == schema
    assert await _data_fingerprint(conn) == data
