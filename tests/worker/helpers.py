"""Helpers for the worker tests: queue tasks, read them back, wait on conditions."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson


async def queue(
    conn: asyncpg.Connection,
    task_type: str,
    params: Any = None,
    *,
    priority: int = 0,
    max_attempts: int = 3,
) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO tasks (task_type, params, priority, max_attempts) "
        "VALUES ($1, $2::jsonb, $3, $4) RETURNING id",
        task_type,
        orjson.dumps(params if params is not None else {}).decode(),
        priority,
        max_attempts,
    )


async def queue_many(
    conn: asyncpg.Connection, task_type: str, params: list[Any]
) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "INSERT INTO tasks (task_type, params) "
        "SELECT $1, p::jsonb FROM unnest($2::text[]) AS p RETURNING id",
        task_type,
        [orjson.dumps(p).decode() for p in params],
    )
    return [r["id"] for r in rows]


async def task(conn: asyncpg.Connection, task_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT status::text AS status, worker_id, attempts, max_attempts, "
        "result_data::text AS result, error_message FROM tasks WHERE id = $1",
        task_id,
    )
    assert row is not None
    record = dict(row)
    record["result"] = orjson.loads(record["result"]) if record["result"] is not None else None
    return record


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_status(
    conn: asyncpg.Connection, task_id: uuid.UUID, status: str, *, timeout: float = 10
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await task(conn, task_id)
        return row if row["status"] == status else None

    try:
        return await wait_until(check, timeout=timeout, what=f"task {task_id} to be {status}")  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {await task(conn, task_id)}") from None


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
