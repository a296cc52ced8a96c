"""4. Claim throughput.

Trivial tasks claimed and completed per second by 1, 4 and 8 worker connections through
the worker's real claim path: gpu_reactor.func_claim_available_task then the fenced
gpu_reactor.func_mark_task_complete, logged in as a member of the least-privilege gpu_worker role
(through worker.db.Link when the worker package is importable). The queue is filled
first, then drained; the rate is tasks / time to drain.

Peer, interleaved on the same database: pgqueuer's own drain benchmark shape
(tools/benchmark.py --strategy drain): N jobs enqueued, then one PgQueuer per
connection in drain mode with a no-op entrypoint, at batch size 1 (comparable: one job
per claim) and at its default batch size 10.

Misbehaviour (exit 1): a task claimed twice, a completion refused, a task left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg

from bench.common import Context, Misbehaviour, render_table, spread, summary

NAME = "claim_throughput"
DRAIN_LIMIT_SEC = 120.0
SEED = """
INSERT INTO tasks (task_type, params)
SELECT 'noop', jsonb_build_object('n', g) FROM generate_series(1, $1::int) AS g
"""


# --- ours --------------------------------------------------------------------------------


def _claim_path(
    dsn: str, worker_id: str
) -> tuple[
    Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[bool]], Callable[[], Awaitable[None]]
]:
    """claim(), complete(task), close() through the worker's own code when present."""
    try:
        from worker.db import Link
    except ImportError:
        Link = None  # noqa: N806 - a class or nothing
    if Link is not None:
        link = Link(dsn, name="claim", worker_id=worker_id, timeout=30)
        return (lambda: link.claim(None)), (lambda t: link.complete(t, b"{}")), link.close
    state: dict[str, asyncpg.Connection] = {}

    async def conn() -> asyncpg.Connection:
        if "c" not in state:
            state["c"] = await asyncpg.connect(dsn)
        return state["c"]

    async def claim() -> Any:
        return await (await conn()).fetchrow(
            "SELECT id, attempts FROM gpu_reactor.func_claim_available_task($1::text, NULL)",
            worker_id,
        )

    async def complete(task: Any) -> bool:
        return bool(
            await (await conn()).fetchval(
                "SELECT gpu_reactor.func_mark_task_complete($1, '{}'::jsonb, $2, $3)",
                task["id"],
                worker_id,
                task["attempts"],
            )
        )

    async def close() -> None:
        if "c" in state:
            await state["c"].close()

    return claim, complete, close


def _task_id(task: Any) -> Any:
    return task.id if hasattr(task, "id") else task["id"]


async def _ours(ctx: Context, dsn: str, admin: asyncpg.Connection, n: int, conns: int) -> float:
    await admin.execute("TRUNCATE tasks")
    await admin.execute("DELETE FROM workers")
    ids = [f"bench-claim-{i}" for i in range(conns)]
    await admin.executemany(
        "INSERT INTO workers (id, status, managed, last_heartbeat) "
        "VALUES ($1, 'active', false, now())",
        [(i,) for i in ids],
    )
    await admin.execute(SEED, n)
    await admin.execute("VACUUM ANALYZE tasks")
    paths = [_claim_path(ctx.worker_dsn(dsn), i) for i in ids]
    claimed: list[Any] = []

    async def drain(
        claim: Callable[[], Awaitable[Any]], complete: Callable[[Any], Awaitable[bool]]
    ) -> None:
        for _ in range(n + 1):
            task = await claim()
            if task is None:
                return
            claimed.append(_task_id(task))
            if not await complete(task):
                raise Misbehaviour(f"completion of claimed task {_task_id(task)} was refused")

    started = time.perf_counter()
    for _ in range(3):  # a claimer that finds every row locked stops; go again if rows remain
        await asyncio.wait_for(asyncio.gather(*(drain(c, d) for c, d, _ in paths)), DRAIN_LIMIT_SEC)
        if len(claimed) >= n:
            break
    elapsed = time.perf_counter() - started
    for _, _, close in paths:
        await close()
    await _check_ours(admin, claimed, n)
    return n / elapsed


async def _check_ours(admin: asyncpg.Connection, claimed: list[Any], n: int) -> None:
    if len(set(claimed)) != len(claimed):
        raise Misbehaviour(f"{len(claimed) - len(set(claimed))} task(s) claimed twice")
    row = await admin.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'Complete') AS done, "
        "count(*) FILTER (WHERE status <> 'Complete') AS other, max(attempts) AS attempts "
        "FROM tasks"
    )
    if row["done"] != n or row["other"] or len(claimed) != n:
        raise Misbehaviour(
            f"claimed {len(claimed)} and completed {row['done']} of {n} tasks; "
            f"{row['other']} not Complete"
        )
    if row["attempts"] != 1:
        raise Misbehaviour(f"a task was attempted {row['attempts']} times")


# --- pgqueuer ------------------------------------------------------------------------------


async def _pgqueuer(dsn: str, n: int, conns: int, batch: int) -> float:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    setup = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(setup))
        await queries.clear_queue()
        await queries.clear_statistics_log()
        await queries.clear_queue_log()
        for first in range(0, n, 5000):
            size = min(5000, n - first)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        await setup.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await setup.close()
    seen: list[Any] = []
    connections = [await asyncpg.connect(dsn) for _ in range(conns)]
    apps = [PgQueuer(AsyncpgDriver(c)) for c in connections]
    for app in apps:

        @app.entrypoint("noop")
        async def noop(job: Job) -> None:
            seen.append(job.id)

    started = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    app.run(
                        batch_size=batch,
                        mode=QueueExecutionMode.drain,
                        log_aggregation_interval=timedelta(0),
                    )
                    for app in apps
                )
            ),
            DRAIN_LIMIT_SEC,
        )
        elapsed = time.perf_counter() - started
    finally:
        for c in connections:
            await c.close()
    if len(set(seen)) != len(seen) or len(seen) != n:
        raise Misbehaviour(f"pgqueuer ran {len(seen)} jobs ({len(set(seen))} distinct) of {n}")
    return n / elapsed


async def _install_pgqueuer(dsn: str) -> None:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def run(ctx: Context) -> dict[str, Any]:
    n = ctx.size(3000, 1000, 300)
    rounds = ctx.size(3, 2, 1)
    conn_counts = [1, 4, 8] if not ctx.tiny else [4]
    systems = ["ours", "pgqueuer_b1", "pgqueuer_b10"]
    rates: dict[str, dict[int, list[float]]] = {s: {c: [] for c in conn_counts} for s in systems}
    async with ctx.database("bench_claim") as dsn:
        await _install_pgqueuer(dsn)
        admin = await asyncpg.connect(dsn)
        try:
            for round_no in range(rounds):
                for conns in conn_counts:
                    shift = round_no % len(systems)
                    for system in systems[shift:] + systems[:shift]:
                        await admin.execute("CHECKPOINT")
                        if system == "ours":
                            rate = await _ours(ctx, dsn, admin, n, conns)
                        else:
                            batch = int(system.rsplit("_b", 1)[1])
                            rate = await _pgqueuer(dsn, n, conns, batch)
                        rates[system][conns].append(rate)
        finally:
            await admin.close()
    return _report(rates, conn_counts, n, rounds)


def _report(
    rates: dict[str, dict[int, list[float]]], conn_counts: list[int], n: int, rounds: int
) -> dict[str, Any]:
    rows, figures = [], {}
    for conns in conn_counts:
        s = {k: summary(v[conns]) for k, v in rates.items()}
        r1 = summary(
            [a / b for a, b in zip(rates["ours"][conns], rates["pgqueuer_b1"][conns], strict=True)]
        )
        r10 = summary(
            [a / b for a, b in zip(rates["ours"][conns], rates["pgqueuer_b10"][conns], strict=True)]
        )
        figures[str(conns)] = {
            "tasks_per_sec": s,
            "ours_over_pgqueuer_b1": r1,
            "ours_over_pgqueuer_b10": r10,
        }
        rows.append(
            [
                conns,
                spread(s["ours"], 0),
                spread(s["pgqueuer_b1"], 0),
                spread(r1, 2),
                spread(s["pgqueuer_b10"], 0),
                spread(r10, 2),
            ]
        )
    table = render_table(
        f"Claim throughput: {n:,} trivial tasks drained, tasks/s (median (min–max) over "
        f"{rounds} interleaved round(s))",
        [
            "connections",
            "ours (claim+complete)",
            "pgqueuer batch 1",
            "ours/pgq1",
            "pgqueuer batch 10",
            "ours/pgq10",
        ],
        rows,
    )
    eight = figures.get(str(conn_counts[-1]), {})
    return {
        "name": NAME,
        "tasks_per_run": n,
        "rounds": rounds,
        "figures": figures,
        "headline": {
            "connections": conn_counts[-1],
            "ours_tasks_per_sec": eight.get("tasks_per_sec", {}).get("ours", {}).get("median"),
            "ours_over_pgqueuer_b1": eight.get("ours_over_pgqueuer_b1", {}).get("median"),
        },
        "table": table,
    }
