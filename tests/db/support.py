"""Shared by the schema tests: rows to start from and what a LISTEN connection heard."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg

CHANNEL = "gpu_reactor"
SENTINEL = "sentinel"
SETTLE_TIMEOUT = 5.0


class Notifications:
    """Everything a LISTEN connection on gpu_reactor received, in order.

    ``settle(acting)`` sends a sentinel from the acting connection and waits for it:
    notifications are delivered in commit order, so once the sentinel is here every
    notification of what the acting side committed before it is here too.
    """

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._sentinel = asyncio.Event()

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == SENTINEL:
            self._sentinel.set()
        else:
            self.payloads.append(payload)

    async def settle(self, acting: asyncpg.Connection) -> None:
        self._sentinel.clear()
        await acting.execute(f"NOTIFY {CHANNEL}, '{SENTINEL}'")
        await asyncio.wait_for(self._sentinel.wait(), SETTLE_TIMEOUT)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads]

    async def take(self, acting: asyncpg.Connection) -> list[dict[str, Any]]:
        """Settle, return the events received so far and forget them."""
        await self.settle(acting)
        events = self.events()
        self.payloads.clear()
        return events


async def add_worker(
    conn: asyncpg.Connection, worker_id: str, status: str = "active", **columns: Any
) -> str:
    names = ["id", "status", *columns]
    values = [worker_id, status, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO workers ({', '.join(names)}) VALUES ({placeholders})", *values)
    return worker_id


async def add_tasks(
    conn: asyncpg.Connection,
    count: int,
    *,
    task_type: str = "render",
    priority: int = 0,
    max_attempts: int = 3,
) -> list[uuid.UUID]:
    """Insert ``count`` Queued tasks in one statement, oldest first by 1 ms steps."""
    rows = await conn.fetch(
        """
        INSERT INTO tasks (task_type, params, priority, max_attempts, created_at)
        SELECT $1, jsonb_build_object('n', g), $2, $3,
               now() - interval '1 hour' + g * interval '1 millisecond'
        FROM generate_series(1, $4) AS g
        RETURNING id
        """,
        task_type,
        priority,
        max_attempts,
        count,
    )
    return [r["id"] for r in rows]


async def add_task(conn: asyncpg.Connection, **columns: Any) -> uuid.UUID:
    columns.setdefault("task_type", "render")
    names = list(columns)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await conn.fetchval(  # type: ignore[no-any-return]
        f"INSERT INTO tasks ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        *columns.values(),
    )


async def claim(
    conn: asyncpg.Connection, worker_id: str, task_types: list[str] | None = None
) -> asyncpg.Record | None:
    return await conn.fetchrow(  # type: ignore[no-any-return]
        "SELECT * FROM gpu_reactor.func_claim_available_task($1, $2)", worker_id, task_types
    )


async def task_row(conn: asyncpg.Connection, task_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    assert row is not None
    return dict(row)


async def connect_many(dsn: str, count: int) -> list[asyncpg.Connection]:
    return list(await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(count))))


async def close_all(conns: list[asyncpg.Connection]) -> None:
    await asyncio.gather(*(c.close() for c in conns))
