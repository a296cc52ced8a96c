"""gpu_reactor.func_update_worker_heartbeat and gpu_reactor.func_report_worker_drained."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.db.support import Notifications, add_worker

BEAT = "SELECT gpu_reactor.func_update_worker_heartbeat($1, $2)"


async def _worker(conn: asyncpg.Connection, worker_id: str) -> dict:
    row = await conn.fetchrow("SELECT * FROM workers WHERE id = $1", worker_id)
    assert row is not None
    return dict(row)


async def test_first_beat_promotes_spawning_to_active(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1", "spawning", managed=True)
    assert (await _worker(conn, "w1"))["activated_at"] is None
    await listener.take(conn)

    assert await conn.fetchval(BEAT, "w1", '{"vram_gb": 24}') == "active"
    row = await _worker(conn, "w1")
    assert row["status"] == "active"
    assert row["activated_at"] is not None
    assert row["last_heartbeat"] is not None
    assert row["managed"] is True
    assert await listener.take(conn) == [
        {"event": "worker_status", "worker_id": "w1", "status": "active"}
    ]

    # The second beat keeps activated_at.
    activated = row["activated_at"]
    assert await conn.fetchval(BEAT, "w1", "{}") == "active"
    assert (await _worker(conn, "w1"))["activated_at"] == activated


async def test_beat_merges_metadata(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1", metadata='{"vram_gb": 24, "gpu": "A5000"}')
    await conn.fetchval(BEAT, "w1", '{"vram_gb": 22, "temp_c": 71}')
    await conn.fetchval(BEAT, "w1", None)
    metadata = json.loads((await _worker(conn, "w1"))["metadata"])
    assert metadata == {"vram_gb": 22, "gpu": "A5000", "temp_c": 71}


async def test_beat_moves_last_heartbeat_forward(conn: asyncpg.Connection) -> None:
    await add_worker(conn, "w1", last_heartbeat=None)
    await conn.execute("UPDATE workers SET last_heartbeat = now() - interval '1 hour'")
    old = (await _worker(conn, "w1"))["last_heartbeat"]
    await conn.fetchval(BEAT, "w1", "{}")
    assert (await _worker(conn, "w1"))["last_heartbeat"] > old


@pytest.mark.parametrize("status", ["terminating", "error", "terminated"])
async def test_beat_returns_the_status_and_never_resurrects(
    conn: asyncpg.Connection, listener: Notifications, status: str
) -> None:
    await add_worker(conn, "w1", status)
    await listener.take(conn)
    assert await conn.fetchval(BEAT, "w1", "{}") == status
    assert (await _worker(conn, "w1"))["status"] == status
    assert await listener.take(conn) == []


async def test_beat_that_changes_no_status_sends_no_notification(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1")
    await listener.take(conn)
    for _ in range(5):
        assert await conn.fetchval(BEAT, "w1", '{"load": 0.5}') == "active"
    assert await listener.take(conn) == []


async def test_an_unknown_id_registers_itself_as_an_unmanaged_active_worker(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    assert await conn.fetchval(BEAT, "stranger", '{"gpu": "4090"}') == "active"
    row = await _worker(conn, "stranger")
    assert row["status"] == "active"
    assert row["managed"] is False
    assert row["activated_at"] is not None and row["last_heartbeat"] is not None
    assert json.loads(row["metadata"]) == {"gpu": "4090"}
    assert await listener.take(conn) == [
        {"event": "worker_status", "worker_id": "stranger", "status": "active"}
    ]


async def test_report_drained_records_and_notifies(
    conn: asyncpg.Connection, listener: Notifications
) -> None:
    await add_worker(conn, "w1", "terminating")
    await listener.take(conn)
    assert await conn.fetchval("SELECT gpu_reactor.func_report_worker_drained('w1')") is True
    assert "drained_at" in json.loads((await _worker(conn, "w1"))["metadata"])
    assert (await _worker(conn, "w1"))["status"] == "terminating"
    assert await listener.take(conn) == [{"event": "worker_drained", "worker_id": "w1"}]


@pytest.mark.parametrize("status", ["terminated", "error", None])
async def test_report_drained_of_a_finished_or_unknown_worker_is_refused(
    conn: asyncpg.Connection, listener: Notifications, status: str | None
) -> None:
    if status is not None:
        await add_worker(conn, "w1", status)
    await listener.take(conn)
    assert await conn.fetchval("SELECT gpu_reactor.func_report_worker_drained('w1')") is False
    assert await listener.take(conn) == []
