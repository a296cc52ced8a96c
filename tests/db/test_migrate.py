from __future__ import annotations

import asyncio

import asyncpg

from reactor.db.migrate import check_schema, load_migrations, migrate
from tests.pg import PgServer


async def _schema_fingerprint(conn: asyncpg.Connection) -> list[tuple]:
    rows = await conn.fetch("""
        SELECT 'column' AS kind, table_name || '.' || column_name || ':' || data_type
               || ':' || coalesce(column_default, '') AS item
        FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL
        SELECT 'index', indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'function', p.proname || ':' || md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'trigger', tgname || ':' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
        ORDER BY 1, 2
    """)
    return [tuple(r) for r in rows]


async def test_fresh_migrate_applies_every_file_and_second_run_changes_nothing(
        pg_server: PgServer) -> None:
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
