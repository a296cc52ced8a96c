"""gpu-reactor uninstall: the seed's database as it was before migrate, and a fresh
database's tasks kept unless asked."""

from __future__ import annotations

import asyncpg
import pytest

from reactor.db.migrate import migrate
from reactor.db.uninstall import plan_removal, uninstall
from reactor.errors import SchemaError
from tests.pg import PgServer

# Everything of the app that migrate could touch, as PostgreSQL describes it.
APP_OBJECTS = """
SELECT 'column', table_schema || '.' || table_name || '.' || column_name || ':' || data_type
       || ':' || coalesce(column_default, '') || ':' || is_nullable
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'function', p.oid::regprocedure::text || pg_get_functiondef(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
UNION ALL SELECT 'trigger', tgrelid::regclass::text || pg_get_triggerdef(oid)
FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'constraint', conrelid::regclass::text || conname || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'view', c.relname || pg_get_viewdef(c.oid)
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
UNION ALL SELECT 'policy', tablename || policyname || coalesce(qual, '') FROM pg_policies
UNION ALL SELECT 'acl', c.relname || coalesce(c.relacl::text, '')
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL SELECT 'schema', nspname FROM pg_namespace
ORDER BY 1, 2
"""


async def _app(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in await conn.fetch(APP_OBJECTS)]


async def test_uninstall_leaves_the_seeds_database_as_it_was(seed: asyncpg.Connection) -> None:
    before = await _app(seed)
    rows = await seed.fetch("SELECT id, status FROM tasks ORDER BY id")
    await migrate(seed)
    assert await _app(seed) != before  # migrate did change something to undo
    removal = await uninstall(seed)
    assert "DROP SCHEMA gpu_reactor CASCADE" in removal.statements
    assert await _app(seed) == before
    assert await seed.fetch("SELECT id, status FROM tasks ORDER BY id") == rows
    # ... and it can come back.
    await migrate(seed)


async def test_uninstall_keeps_the_tasks_of_a_database_gpu_reactor_made(
    pg_server: PgServer,
) -> None:
    name = await pg_server.create_empty_database()
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO public.tasks (task_type) VALUES ('render')")
        removal = await plan_removal(conn)
        assert any("public.tasks" in kept for kept in removal.kept)
        await uninstall(conn)
        assert await conn.fetchval("SELECT count(*) FROM public.tasks") == 1
        assert not await conn.fetchval("SELECT to_regnamespace('gpu_reactor') IS NOT NULL")
        assert not await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.tasks'::regclass"
            " AND NOT tgisinternal"
        )
        await migrate(conn)  # back again, over the kept table, which is now the app's
        assert not any("public.tasks" in k for k in (await plan_removal(conn)).kept)
        await uninstall(conn)
        await conn.execute("DROP TABLE public.tasks, public.workers; DROP TYPE task_status")
        await migrate(conn)
        await uninstall(conn, drop_tables=True)
        assert await conn.fetchval("SELECT to_regclass('public.tasks')") is None
    finally:
        await conn.close()
        await pg_server.drop_database(name)


async def test_uninstall_refuses_while_its_workers_are_live(seed: asyncpg.Connection) -> None:
    await migrate(seed)
    await seed.execute(
        "INSERT INTO workers (id, status, managed, pod_id) VALUES ('gpu-reactor-1', 'active',"
        " true, 'pod-1')"
    )
    with pytest.raises(SchemaError, match="1 workers gpu-reactor started are still live"):
        await uninstall(seed)
    assert await seed.fetchval("SELECT to_regnamespace('gpu_reactor') IS NOT NULL")
