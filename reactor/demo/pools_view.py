"""The demo's view of its GPU pools while it runs: per pool its GPU, price, workers, queue,
tasks done and spend, from the reactor's last snapshot and one count of this run's tasks.

``pool_rows`` is pure; the displays (reactor/demo/display.py) render the rows as a table
under the live dashboard or as one plain line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import asyncpg
from rich.table import Table

from reactor.domain.model import Snapshot, WorkerStatus
from reactor.domain.pools import Pool, Pools

# Which pool ran a task: the pool of the worker that completed it. workers.pool once
# migration 0016 has added it, metadata ->> 'pool' before.
WORKER_POOL = "coalesce(to_jsonb(w) ->> 'pool', w.metadata ->> 'pool')"
RUN_DONE_BY_POOL = f"""
SELECT {WORKER_POOL} AS pool, count(*) AS done
FROM tasks t JOIN workers w ON w.id = t.worker_id
WHERE t.params ->> 'demo_run' = $1 AND t.status = 'Complete'
GROUP BY 1
"""


@dataclass(frozen=True)
class PoolRow:
    name: str
    gpu: str  # its first GPU type: what the local provider names its pods' GPU
    price: float  # USD/h of one of its workers
    task_types: str
    spawning: int
    active: int
    draining: int
    queued: int  # claimable tasks of its task types
    done: int  # this run's tasks completed by its workers
    burn: float  # USD/h of its live workers

    @property
    def live(self) -> int:
        return self.spawning + self.active + self.draining


async def done_by_pool(conn: asyncpg.Pool | asyncpg.Connection, run_id: str) -> dict[str, int]:
    return {r["pool"]: r["done"] for r in await conn.fetch(RUN_DONE_BY_POOL, run_id)}


def pool_rows(snap: Snapshot | None, pools: Pools, done: dict[str, int]) -> list[PoolRow]:
    """One row per pool in file order; a task type goes to the first pool that runs it."""
    workers = snap.workers if snap is not None else ()
    ready = dict(snap.ready_by_type or ()) if snap is not None else {}
    rows = []
    for pool in pools:
        mine = [w for w in workers if pools.pool_of(w) is pool]
        counts = Counter(w.status for w in mine)
        queued = sum(n for kind, n in ready.items() if _first_pool(pools, kind) is pool)
        s = pool.settings
        rows.append(
            PoolRow(
                name=pool.name,
                gpu=next(iter(s.runpod_gpu_types), "-"),
                price=s.gpu_hourly_price_usd,
                task_types=", ".join(pool.patterns),
                spawning=counts[WorkerStatus.SPAWNING],
                active=counts[WorkerStatus.ACTIVE],
                draining=counts[WorkerStatus.TERMINATING],
                queued=queued,
                done=done.get(pool.name, 0),
                burn=sum(w.cost_per_hr for w in mine),
            )
        )
    return rows


def _first_pool(pools: Pools, task_type: str | None) -> Pool | None:
    return next((p for p in pools if p.runs(task_type)), None)


def pools_table(rows: list[PoolRow]) -> Table:
    table = Table(title="GPU pools (the demo's POOLS_FILE)", title_justify="left", expand=False)
    for column in ("pool", "GPU", "$/GPU-h", "task types", "workers", "queued", "done", "$/h"):
        table.add_column(column, justify="right" if column[0] in "$wqd" else "left")
    for r in rows:
        workers = f"{r.live}" + (f" ({r.spawning} starting)" if r.spawning else "")
        table.add_row(
            r.name,
            r.gpu,
            f"{r.price:.2f}",
            r.task_types,
            workers,
            str(r.queued),
            str(r.done),
            f"{r.burn:.2f}",
        )
    return table


def pools_line(rows: list[PoolRow]) -> str:
    """The plain display's line: ``big (H100 80GB): 1 worker, 2 queued, 5 done · ...``."""
    return "pools: " + " · ".join(
        f"{r.name} ({r.gpu}): {r.live} worker{'s' if r.live != 1 else ''}, "
        f"{r.queued} queued, {r.done} done, ${r.burn:.2f}/h"
        for r in rows
    )
