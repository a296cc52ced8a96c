"""Install gpu-reactor's schema, or bring it up to date.

A database gpu-reactor has never seen gets ``sql/schema.sql`` (the whole current truth)
and every migration of this release is recorded as applied. A database an earlier
release migrated gets the numbered files of ``sql/migrations`` it lacks, in order - files
before 0015 in the schema they migrated (as those releases ran them), 0015 onwards, which
name every object schema-qualified, with a search_path of pg_catalog only.

Each file (or schema.sql) runs in one transaction, cut in two where a line
``-- gpu-reactor: commit`` says so; what follows a line
``-- gpu-reactor: outside a transaction`` runs one statement at a time, outside any
transaction (CREATE INDEX CONCURRENTLY, so a live app is never blocked on a big table).
A file is recorded in ``gpu_reactor.migrations`` only once all of it ran, so an
interrupted migrate runs it again: every file is idempotent. A session advisory lock makes
concurrent ``migrate`` runs take turns; a checksum reports an applied file edited later.

:func:`plan` returns what :func:`migrate` would run, statement by statement, and changes
nothing (its session is read-only).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

import asyncpg

from reactor.db.queries import query
from reactor.db.sqlsplit import split_statements
from reactor.errors import SchemaError

log = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x67707572_6D696772  # "gpur" "migr"
OWN_SCHEMA_VERSION = 15  # 0015_own_schema: the first file that lives in gpu_reactor
# Lines (alone on their line) that cut a file: what follows "commit" runs in a new
# transaction (an enum value added before it can be used after it); what follows
# "outside a transaction" runs one statement at a time, outside any.
_CUT = re.compile(r"^-- gpu-reactor: (commit|outside a transaction)$", re.MULTILINE)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CONCURRENT_INDEX = re.compile(
    r"CREATE\s+INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)\s+ON\s+(\w+)\.", re.IGNORECASE
)

# Files before 0015 name tables unqualified: they run with the search_path pinned to the
# schema they migrate, pg_temp last. Their functions captured it (SET search_path FROM
# CURRENT), and as most are SECURITY DEFINER that matters: with pg_temp unlisted,
# PostgreSQL resolves table names in the caller's temporary schema first, so any role
# could shadow workers or tasks. From 0015 every name is qualified.
_PIN_SEARCH_PATH = (
    "SELECT set_config('search_path', quote_ident(current_schema()) || ', pg_temp', true)"
)
_PIN_CATALOG_ONLY = "SELECT set_config('search_path', 'pg_catalog, pg_temp', true)"

_LEGACY_LEDGER = """
CREATE TABLE IF NOT EXISTS gpu_reactor_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Install(StrEnum):
    FRESH = "fresh"  # gpu-reactor was never here: schema.sql
    LEGACY = "legacy"  # an earlier release's objects in the migrated schema (0001-0014)
    CURRENT = "current"  # gpu_reactor.migrations says what is applied


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        if self.name == "schema":
            return f"schema.sql (0001-{self.version:04d})"
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def segments(self) -> list[tuple[bool, str]]:
        """(in a transaction?, SQL) in order; an outside segment is one statement."""
        parts = _CUT.split(self.sql)
        found: list[tuple[bool, str]] = [(True, parts[0])]
        for cut, text in zip(parts[1::2], parts[2::2], strict=True):
            if cut == "commit":
                found.append((True, text))
            else:
                found += [(False, statement) for statement in split_statements(text)]
        return found


@dataclass(frozen=True)
class Step:
    """One statement of a plan, and the file it comes from."""

    source: str
    sql: str
    in_transaction: bool


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


def load_schema() -> Migration:
    """sql/schema.sql, as the one step a fresh install runs (version: the newest file)."""
    text = resources.files("reactor.sql").joinpath("schema.sql").read_text()
    return Migration(load_migrations()[-1].version, "schema", text)


async def install_state(conn: asyncpg.Connection) -> Install:
    # An install interrupted before its first record is fresh again (schema.sql is
    # idempotent), even though gpu_reactor.migrations exists.
    if await conn.fetchval(
        "SELECT to_regclass('gpu_reactor.migrations') IS NOT NULL"
    ) and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM gpu_reactor.migrations)"):
        return Install.CURRENT
    if await conn.fetchval("SELECT to_regclass('gpu_reactor_migrations') IS NOT NULL"):
        return Install.LEGACY
    return Install.FRESH


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    state = await install_state(conn)
    done: dict[int, str] = {}
    if state is Install.LEGACY:
        rows = await conn.fetch("SELECT version, checksum FROM gpu_reactor_migrations")
        done.update({r["version"]: r["checksum"] for r in rows})
    if state is Install.CURRENT:
        rows = await conn.fetch("SELECT version, checksum FROM gpu_reactor.migrations")
        done.update({r["version"]: r["checksum"] for r in rows})
    return done


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    """What migrate would run here, in order: schema.sql alone on a fresh database."""
    if await install_state(conn) is Install.FRESH:
        return [load_schema()]
    done = await applied_versions(conn)
    for migration in load_migrations():
        if migration.version in done and done[migration.version] != migration.checksum:
            log.warning(
                "migration_changed_after_apply",
                extra={"version": migration.version, "migration": migration.name},
            )
    return [m for m in load_migrations() if m.version not in done]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Bring the schema up to date; return the names of the files applied now."""
    applied_now: list[str] = []
    await _take_turn(conn)
    try:
        if await install_state(conn) is Install.LEGACY:
            await conn.execute(_LEGACY_LEDGER)
        for migration in await pending(conn):
            await _apply(conn, migration)
            applied_now.append(migration.label)
            log.info("migration_applied", extra={"migration": migration.label})
        # Every time, not once: objects a later release creates get the same treatment.
        await conn.execute(query("close_to_app_roles"))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def _take_turn(conn: asyncpg.Connection) -> None:
    """The migration lock, asked for again and again rather than waited for: a session
    waiting inside pg_advisory_lock() holds a snapshot, which CREATE INDEX CONCURRENTLY in
    the session holding the lock would wait for in turn - a deadlock."""
    delay = 0.05
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    legacy = migration.version < OWN_SCHEMA_VERSION
    for in_transaction, sql in migration.segments:
        if in_transaction:
            async with conn.transaction():
                await conn.execute(_PIN_SEARCH_PATH if legacy else _PIN_CATALOG_ONLY)
                await conn.execute(sql)
        else:
            await _run_outside_transaction(conn, sql)
    async with conn.transaction():
        if legacy:
            await conn.execute(
                "INSERT INTO gpu_reactor_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            return
        # schema.sql stands for every file up to its version.
        covered = (
            [m for m in load_migrations() if m.version <= migration.version]
            if migration.name == "schema"
            else [migration]
        )
        for m in covered:
            await conn.execute(
                "INSERT INTO gpu_reactor.migrations (version, name, checksum)"
                " VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
                m.version,
                m.name,
                m.checksum,
            )


async def _run_outside_transaction(conn: asyncpg.Connection, statement: str) -> None:
    index = _CONCURRENT_INDEX.search(statement)
    if index:
        # An interrupted CONCURRENTLY build leaves an invalid index that IF NOT EXISTS
        # would keep: drop it and build it again.
        invalid = await conn.fetchval(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = $1 AND c.relnamespace = $2::regnamespace",
            index.group(1),
            index.group(2),
        )
        if invalid:
            log.warning("invalid_index_rebuilt", extra={"index": index.group(1)})
            await conn.execute(f"DROP INDEX CONCURRENTLY {index.group(2)}.{index.group(1)}")
    await conn.execute(statement)


async def plan(conn: asyncpg.Connection) -> tuple[Install, list[Step]]:
    """What migrate would do here, statement by statement. Changes nothing."""
    async with conn.transaction(readonly=True):
        state = await install_state(conn)
        todo = await pending(conn)
    steps: list[Step] = []
    for migration in todo:
        source = "schema.sql" if migration.name == "schema" else f"{migration.label}.sql"
        for in_transaction, sql in migration.segments:
            statements = split_statements(sql) if in_transaction else [sql]
            steps += [Step(source, s, in_transaction) for s in statements]
    return state, steps


async def check_schema(conn: asyncpg.Connection) -> None:
    """Raise SchemaError unless every migration of this release is applied."""
    if await install_state(conn) is not Install.CURRENT:
        raise SchemaError("gpu-reactor's schema is not installed: run 'gpu-reactor migrate'")
    done = await applied_versions(conn)
    missing = [m for m in load_migrations() if m.version not in done]
    if missing:
        names = ", ".join(m.label for m in missing)
        raise SchemaError(
            f"database schema is not current (missing {names}): run 'gpu-reactor migrate'"
        )
