"""The start-failure breaker's row (sql/migrations/0014_spawn_breaker.sql).

The leader writes it whenever the breaker changes; a new leader, and `gpu-reactor status`,
read it, so the count of pods that never started outlives the process that counted them.
"""

from __future__ import annotations

import asyncpg

from reactor.db.pool import GuardedPool
from reactor.db.queries import query
from reactor.domain.spawn_gate import Pause, StartBreaker


async def load_breaker(db: asyncpg.Connection | GuardedPool, fleet: str) -> StartBreaker:
    row = await db.fetchrow(query("load_spawn_breaker"), fleet)
    if row is None:
        return StartBreaker()
    pause = None
    if row["paused_until"] is not None:
        pause = Pause(row["paused_until"], row["pause_reason"] or "")
    return StartBreaker(row["start_failures"], row["last_start_failure_at"], pause)


async def save_breaker(db: asyncpg.Connection | GuardedPool, fleet: str, b: StartBreaker) -> None:
    await db.execute(
        query("save_spawn_breaker"),
        fleet,
        b.failures,
        b.last_failure_at,
        b.pause.until if b.pause else None,
        # Postgres text holds no NUL; the reason quotes a provider's or a pod's words.
        b.pause.reason.replace("\x00", "")[:1000] if b.pause else None,
    )


def breaker_key(fleet: str, first_pool: str, pool: str) -> str:
    """A pool's breaker row: the fleet's for the first pool (as before pools), the fleet's
    and the pool's name for the others (the executor writes them so)."""
    return fleet if pool == first_pool else f"{fleet}/{pool}"
