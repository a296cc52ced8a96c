"""DEMAND_SQL: the database's own count of the tasks that need a GPU.

Checked once when the reactor starts (a query that fails, or answers anything but one
non-negative integer, stops it with one line); then run inside each snapshot's read-only
transaction, under a savepoint, so a failure never spoils the snapshot. A failure at run
time is logged and counted and the last good value kept: an error never scales the fleet
to zero, nor to MAX_ACTIVE_GPUS.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from reactor.db.errors import CONNECTION_ERRORS
from reactor.errors import ConfigError

log = logging.getLogger(__name__)

DEMAND_SQL_TIMEOUT_SEC = 5.0
# What the seed orchestrator scales on (through its task-counts edge function): queued and
# active tasks of users with credits and room under their limit, whose dependencies are
# Complete, of GPU task types. DEMAND_SQL's default under WORKER_PROTOCOL=headless-wan2gp
# where the function exists.
SEED_DEMAND_SQL = "SELECT count_eligible_tasks_service_role(true, 'gpu')"
_SEED_COUNT_FUNCTION = "public.count_eligible_tasks_service_role(boolean, text)"


class DemandQueryError(Exception):
    """DEMAND_SQL failed or answered something other than one non-negative integer."""


async def run_demand_sql(conn: asyncpg.Connection, sql: str) -> int:
    try:
        rows = await conn.fetch(sql, timeout=DEMAND_SQL_TIMEOUT_SEC)
    except CONNECTION_ERRORS:
        raise
    except (asyncpg.PostgresError, TimeoutError) as exc:
        raise DemandQueryError(f"failed: {type(exc).__name__}: {exc}") from exc
    return _one_count(rows)


def _one_count(rows: list[Any]) -> int:
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" if len(rows) != 1 else f"{len(rows[0])} columns"
        raise DemandQueryError(f"answered {shape}, not one value")
    value = rows[0][0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DemandQueryError(f"answered {value!r}, not a non-negative integer")
    return value


async def demand_sql_for(
    conn: asyncpg.Connection, demand_sql: str | None, protocol: str
) -> str | None:
    """DEMAND_SQL as set; unset, under headless-wan2gp, the seed's count where it exists."""
    if demand_sql is not None or protocol != "headless-wan2gp":
        return demand_sql
    exists = await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", _SEED_COUNT_FUNCTION)
    return SEED_DEMAND_SQL if exists else None


class DemandReader:
    """Runs DEMAND_SQL for each snapshot and keeps its last good answer."""

    def __init__(self, sql: str | None, on_error: Any = None) -> None:
        self.sql = sql
        self.last_good: int | None = None
        self.last_error: str | None = None
        self._on_error = on_error  # a counter's inc(), or None

    async def check(self, conn: asyncpg.Connection) -> None:
        """At start-up: a query that does not work stops the reactor."""
        if self.sql is None:
            return
        async with conn.transaction(readonly=True):
            try:
                self.last_good = await run_demand_sql(conn, self.sql)
            except DemandQueryError as exc:
                raise ConfigError(f"DEMAND_SQL {exc}") from None

    async def read(self, conn: asyncpg.Connection) -> int | None:
        """Inside the snapshot's transaction: the answer, or the last good one."""
        if self.sql is None:
            return None
        try:
            async with conn.transaction():  # a savepoint: a failure leaves the snapshot whole
                value = await run_demand_sql(conn, self.sql)
        except DemandQueryError as exc:
            self.last_error = str(exc)[:300]
            if self._on_error is not None:
                self._on_error()
            log.warning("demand_sql_failed", extra={"error": self.last_error})
            return self.last_good
        self.last_good, self.last_error = value, None
        return value
