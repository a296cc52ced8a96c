"""Take gpu-reactor out of a database again, leaving the application's objects as they were.

What goes: the schema gpu_reactor with everything in it; gpu-reactor's triggers and
indexes on the shared tables (gpu_reactor_*); and, newest first, every change that
migrate recorded in gpu_reactor.shared_changes - the columns it added, the widened
workers_status_check and the instance_type default put back as the app had them. What
stays, and is said: the tables and the task_status type gpu-reactor created (they hold
the app's tasks; ``drop_tables`` removes them too), enum values it added (PostgreSQL
cannot remove one) and the cluster-wide role gpu_worker (other databases may use it).

Refused while workers gpu-reactor started are still live: their pods would bill with
nobody left to end them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from reactor.errors import SchemaError

_SHARED = ("public.tasks", "public.workers")

_TRIGGERS = """
SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND p.pronamespace = 'gpu_reactor'::regnamespace
ORDER BY t.tgrelid::regclass::text, t.tgname
"""

_INDEXES = """
SELECT format('DROP INDEX CONCURRENTLY IF EXISTS public.%I', c.relname)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = ANY ($1::regclass[]) AND c.relname LIKE 'gpu\\_reactor\\_%'
ORDER BY c.relname
"""

_CHANGES = "SELECT object, change, undo FROM gpu_reactor.shared_changes ORDER BY id DESC"

_LIVE_MANAGED = """
SELECT count(*) FROM public.workers
WHERE managed AND status IN ('spawning', 'active', 'terminating')
"""


@dataclass(frozen=True)
class Removal:
    """What uninstall would run, and what it leaves, in words."""

    outside_transaction: list[str]  # index drops, first
    in_transaction: list[str]
    kept: list[str]

    @property
    def statements(self) -> list[str]:
        return self.outside_transaction + self.in_transaction


async def plan_removal(conn: asyncpg.Connection, *, drop_tables: bool = False) -> Removal:
    if not await conn.fetchval("SELECT to_regnamespace('gpu_reactor') IS NOT NULL"):
        raise SchemaError("gpu-reactor is not installed here (no schema gpu_reactor)")
    shared = [t for t in _SHARED if await conn.fetchval("SELECT to_regclass($1)", t)]
    indexes = [r[0] for r in await conn.fetch(_INDEXES, shared)]
    statements = [r[0] for r in await conn.fetch(_TRIGGERS)]
    # The views of the schema read columns it added: the schema goes first.
    statements.append("DROP SCHEMA gpu_reactor CASCADE")
    kept = ["role gpu_worker (cluster-wide; DROP ROLE gpu_worker once no database uses it)"]
    created_tables = []
    for r in await conn.fetch(_CHANGES):
        if r["change"] == "created" and not drop_tables:
            kept.append(f"{r['object']}, which gpu-reactor created (--drop-tables drops it)")
        elif r["change"] == "created":
            created_tables.append(r["undo"])
        elif r["undo"].startswith("--"):
            kept.append(r["undo"].lstrip("- "))
        else:
            statements.append(r["undo"])
    # A table before the type its column uses.
    statements += sorted(created_tables, key=lambda s: not s.startswith("DROP TABLE"))
    return Removal(indexes, statements, kept)


async def uninstall(
    conn: asyncpg.Connection, *, drop_tables: bool = False, force: bool = False
) -> Removal:
    removal = await plan_removal(conn, drop_tables=drop_tables)
    live = await conn.fetchval(_LIVE_MANAGED) if await _has_managed(conn) else 0
    if live and not force:
        raise SchemaError(
            f"{live} workers gpu-reactor started are still live and their pods bill: "
            "end them first (gpu-reactor workers list; gpu-reactor workers terminate ID)"
            " or pass --force"
        )
    for statement in removal.outside_transaction:
        await conn.execute(statement)
    async with conn.transaction():
        for statement in removal.in_transaction:
            await conn.execute(statement)
    return removal


async def _has_managed(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'managed'"
            " AND attrelid = to_regclass('public.workers') AND NOT attisdropped)"
        )
    )
