"""Apply the numbered files of sql/migrations, once each, in order.

Each file runs in its own transaction; a session advisory lock makes concurrent
``migrate`` runs take turns, and ``gpu_reactor_migrations`` records what was applied
(with a checksum, so an edited, already-applied file is reported instead of ignored).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from reactor.db.queries import query
from reactor.errors import SchemaError

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x67707572_6D696772  # "gpur" "migr"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Every migration runs with the search_path pinned to the schema it migrates, pg_temp
# last. The functions capture it (SET search_path FROM CURRENT), and as most are
# SECURITY DEFINER that matters: with pg_temp unlisted, PostgreSQL resolves table names
# in the caller's temporary schema first, so any role (all may create temporary tables)
# could shadow workers or tasks and make the functions act on its own rows.
_PIN_SEARCH_PATH = (
    "SELECT set_config('search_path', quote_ident(current_schema()) || ', pg_temp', true)"
)

_LEDGER = """
CREATE TABLE IF NOT EXISTS gpu_reactor_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("reactor.sql.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"duplicate migration numbers in {versions}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('gpu_reactor_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM gpu_reactor_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Bring the schema up to date; return the names of the files applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_LEDGER)
        done = await applied_versions(conn)
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    log.warning(
                        "migration_changed_after_apply",
                        extra={"version": migration.version, "migration": migration.name},
                    )
                continue
            async with conn.transaction():
                await conn.execute(_PIN_SEARCH_PATH)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO gpu_reactor_migrations (version, name, checksum)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
            log.info("migration_applied", extra={"migration": applied_now[-1]})
        # Every time, not once: objects a later release creates get the same default grants.
        await conn.execute(query("close_to_app_roles"))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def check_schema(conn: asyncpg.Connection) -> None:
    """Raise SchemaError unless every migration of this release is applied."""
    done = await applied_versions(conn)
    missing = [m for m in load_migrations() if m.version not in done]
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        raise SchemaError(
            f"database schema is not current (missing {names}): run 'gpu-reactor migrate'"
        )
