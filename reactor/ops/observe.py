"""Read-only views of the database for operators (the CLI has no reactor in memory).

``fresh_state`` fills a ReactorState from one database read, so `gpu-reactor status`
prints exactly what /status would; the other readers feed `workers list`, `tasks list`
and the dashboard. Rows come back as plain dicts of JSON-friendly values.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from reactor.db.connect import connect
from reactor.db.migrate import check_schema
from reactor.db.pooler import POOLER_ERROR, POOLER_ERRORS
from reactor.db.queries import query
from reactor.domain.fleet import desired_fleet
from reactor.domain.pools import Pools
from reactor.domain.routing import route
from reactor.domain.spawn_gate import SpawnGate
from reactor.engine.breaker import breaker_key, load_breaker
from reactor.engine.demand import DemandReader, demand_sql_for
from reactor.engine.leader import lock_key
from reactor.engine.snapshot import read_snapshot
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import DatabaseError
from reactor.pools_file import load_pools
from reactor.settings import Settings

TASK_STATUSES = ("Queued", "In Progress", "Complete", "Failed", "Cancelled")
EVENTS_WINDOW_SEC = 24 * 3600


def plain(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A row as a dict of values orjson and rich both understand."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, Decimal):
            value = float(value)
        elif isinstance(value, UUID):
            value = str(value)
        out[key] = value
    return out


@asynccontextmanager
async def database(settings: Settings, *, schema: bool = True) -> AsyncIterator[asyncpg.Connection]:
    """One connection for one command, with readable errors; checks the schema first."""
    conn = await connect(settings.dsn())
    try:
        if schema:
            await check_schema(conn)
        yield conn
    except POOLER_ERRORS as exc:
        raise DatabaseError(POOLER_ERROR) from exc
    finally:
        await conn.close()


def _lock_parts(fleet: str) -> tuple[int, int]:
    key = lock_key(fleet) & 0xFFFFFFFFFFFFFFFF
    return key >> 32, key & 0xFFFFFFFF


async def leader_holder(conn: asyncpg.Connection, fleet: str) -> dict[str, Any] | None:
    """The session holding this fleet's leader lock, or None when no reactor leads."""
    row = await conn.fetchrow(query("ops_leader_holder"), *_lock_parts(fleet))
    return plain(row) if row is not None else None


async def worker_events(conn: asyncpg.Connection, limit: int = 50) -> list[ActionRecord]:
    rows = await conn.fetch(query("ops_worker_events"), EVENTS_WINDOW_SEC, limit)
    return [
        ActionRecord(
            at=r["at"].timestamp(),
            kind=r["kind"],
            outcome=r["outcome"],
            reason=r["reason"],
            worker_id=r["worker_id"],
            pod_id=r["pod_id"],
            detail="from the workers table",
        )
        for r in reversed(rows)
    ]


async def blocked(conn: asyncpg.Connection, settings: Settings) -> dict[str, int]:
    """Of the Queued tasks, how many no worker of the fleet could claim now, and why."""
    row = await conn.fetchrow(query("queue_counts"), settings.task_types or None)
    return {k: row[k] for k in ("waiting", "blocked_waiting", "blocked_for_good", "other_types")}


async def fresh_state(conn: asyncpg.Connection, settings: Settings) -> tuple[ReactorState, bool]:
    """A ReactorState from one database read, and whether some reactor holds the lock."""
    state = await fleet_state(conn, settings)
    for record in await worker_events(conn):
        state.record(record)
    leader = await leader_holder(conn, settings.reactor_fleet)
    return state, leader is not None


async def fleet_state(
    conn: asyncpg.Connection, settings: Settings, pools: Pools | None = None
) -> ReactorState:
    """The snapshot, the pools (POOLS_FILE, read now unless given) with each pool's spawn
    gate as a leader would start from, their routing and desired workers: read as the
    reactor's reconcile reads them (reactor/engine/reconcile.py)."""
    pools = pools if pools is not None else load_pools(settings)
    types = pools.patterns() if pools.routed else tuple(settings.task_types)
    sql = (
        None
        if pools.routed
        else await demand_sql_for(conn, settings.demand_sql, settings.worker_protocol)
    )
    snap = await read_snapshot(
        conn,
        arm=False,
        task_types=types or (),
        demand=None if pools.routed else DemandReader(sql),
        by_type=pools.routed or bool(types),
    )
    state = ReactorState(role="cli", started_at=time.time())
    state.snapshot, state.pools, state.db_ok = snap, pools, True
    for pool in pools:
        gate = SpawnGate.for_settings(pool.settings)
        key = breaker_key(settings.reactor_fleet, pools.first.name, pool.name)
        gate.restore(await load_breaker(conn, key))
        state.gates[pool.name] = gate
    state.gate = state.gates[pools.first.name]
    limits = {name: gate.limits(snap.now) for name, gate in state.gates.items()}
    state.routing = route(snap, pools, limits) if pools.routed else None
    state.pool_desired = desired_fleet(snap, pools, limits)
    state.desired_workers = sum(state.pool_desired.values())
    return state


async def live_workers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [plain(r) for r in await conn.fetch(query("ops_workers_health"))]


def with_pools(rows: list[dict[str, Any]], pools: Pools) -> list[dict[str, Any]]:
    """The rows with ``pool`` the name of the pool each worker belongs to (the row's own
    name when that pool left POOLS_FILE); rows that do not say stay as they are."""
    out = []
    for row in rows:
        if "pool" in row:
            pool = pools.pool_named(row["pool"])
            row = {**row, "pool": pool.name if pool is not None else row["pool"]}
        out.append(row)
    return out


async def ended_workers(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    return [plain(r) for r in await conn.fetch(query("ops_workers_ended"), limit)]


async def worker_row(conn: asyncpg.Connection, worker_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(query("ops_worker"), worker_id)
    return plain(row) if row is not None else None


async def list_tasks(
    conn: asyncpg.Connection, status: str | None, limit: int
) -> list[dict[str, Any]]:
    return [plain(r) for r in await conn.fetch(query("ops_list_tasks"), status, limit)]


async def overview(conn: asyncpg.Connection) -> dict[str, Any]:
    return plain(await conn.fetchrow(query("ops_orchestrator_status")))


async def fleet_cost(conn: asyncpg.Connection) -> dict[str, Any]:
    return plain(await conn.fetchrow(query("ops_fleet_cost")))


async def recent_tasks(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    return [plain(r) for r in await conn.fetch(query("ops_recent_tasks"), limit)]


def age_text(seconds: float | None) -> str:
    """A short human age: 42s, 3m05s, 2h07m, 3d04h; '-' when unknown."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def since(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else (now - moment).total_seconds()
