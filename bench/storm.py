"""3. Storm: 100,000 tasks over about 10 s while the reactor runs.

Four connections insert single rows and one inserts batches (multi-row INSERT ...
SELECT), each paced to a straight line so the whole lands in ~10 s. The reactor runs in
its own process (provider runpod against the fake server, MAX_ACTIVE_GPUS=200,
TASKS_PER_GPU_THRESHOLD=500, so the storm calls for 200 workers). Measured: reconciles,
the reactor's CPU seconds (/proc/<pid>/stat), time until the 200th create call, peak
pg_notification_queue_usage() (sampled every 20 ms), notifications sent, insert rate.

Peer, interleaved: the same storm into a copy of the table with a row-level pg_notify
trigger and one LISTEN connection receiving (what a per-row NOTIFY design sends its
reactor). Reference: the seed polled every 30 s, so it asked for workers up to 30 s
after the storm (not measured).

Misbehaviour (exit 1): tasks missing after the storm, more create calls than workers
desired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.common import Context, Misbehaviour, fmt, render_table, require, spread, summary
from bench.reaction_latency import reactor_env
from bench.reactor_proc import ReactorProcess

NAME = "storm"
MAX_WORKERS = 200
THRESHOLD = 500
SINGLE_CONNECTIONS = 4
SINGLE_SHARE = 0.2  # of the tasks inserted one row per transaction
BATCH_MAX = 2000
STORM_LIMIT_SEC = 90.0
PEER_SETUP = """
CREATE TABLE IF NOT EXISTS tasks_notify (LIKE tasks INCLUDING ALL);
CREATE OR REPLACE FUNCTION bench_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_row',
                      json_build_object('id', NEW.id, 'task_type', NEW.task_type)::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_notify_row ON tasks_notify;
CREATE TRIGGER bench_notify_row AFTER INSERT ON tasks_notify
    FOR EACH ROW EXECUTE FUNCTION bench_notify_row();
"""


async def _paced(
    conn: asyncpg.Connection, table: str, quota: int, seconds: float, batch: bool
) -> None:
    single = f"INSERT INTO {table} (task_type, params) VALUES ('storm', '{{}}')"
    multi = (
        f"INSERT INTO {table} (task_type, params) SELECT 'storm', jsonb_build_object('n', g) "
        f"FROM generate_series(1, $1::int) AS g"
    )
    started = time.perf_counter()
    done = 0
    while done < quota:
        elapsed = time.perf_counter() - started
        if elapsed > STORM_LIMIT_SEC:
            raise TimeoutError(f"storm inserts still running after {STORM_LIMIT_SEC:g} s")
        due = math.ceil(quota * min(1.0, elapsed / seconds))
        if done >= due:
            await asyncio.sleep(0.005)
            continue
        if batch:
            size = min(BATCH_MAX, due - done)
            await conn.execute(multi, size)
            done += size
        else:
            await conn.execute(single)
            done += 1


async def _storm(dsn: str, table: str, total: int, seconds: float) -> float:
    """Insert ``total`` rows into ``table`` in ~``seconds``; return the insert duration."""
    singles = int(total * SINGLE_SHARE) // SINGLE_CONNECTIONS
    batched = total - singles * SINGLE_CONNECTIONS
    conns = [await asyncpg.connect(dsn) for _ in range(SINGLE_CONNECTIONS + 1)]
    started = time.perf_counter()
    try:
        await asyncio.gather(
            _paced(conns[0], table, batched, seconds, True),
            *(_paced(c, table, singles, seconds, False) for c in conns[1:]),
        )
    finally:
        for conn in conns:
            await conn.close()
    return time.perf_counter() - started


class QueueSampler:
    """Peak pg_notification_queue_usage() and notifications received, while it runs."""

    def __init__(self, dsn: str, channel: str, event: str | None = None) -> None:
        self.dsn, self.channel, self.event = dsn, channel, event
        self.peak = 0.0
        self.received = 0
        self._task: asyncio.Task[None] | None = None
        self._conns: list[asyncpg.Connection] = []

    async def __aenter__(self) -> QueueSampler:
        listen, sample = await asyncpg.connect(self.dsn), await asyncpg.connect(self.dsn)
        self._conns = [listen, sample]
        await listen.add_listener(self.channel, self._on_notify)
        self._task = asyncio.create_task(self._sample(sample))
        return self

    def _on_notify(self, _c: Any, _pid: int, _channel: str, payload: str) -> None:
        if self.event is None:
            self.received += 1
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            if json.loads(payload).get("event") == self.event:
                self.received += 1

    async def _sample(self, conn: asyncpg.Connection) -> None:
        for _ in range(int(STORM_LIMIT_SEC * 2 / 0.02)):  # bounded: twice the storm limit
            self.peak = max(self.peak, await conn.fetchval("SELECT pg_notification_queue_usage()"))
            await asyncio.sleep(0.02)

    async def __aexit__(self, *_: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for conn in self._conns:
            await conn.close()


async def _count(admin: asyncpg.Connection, table: str, total: int) -> None:
    found = await admin.fetchval(f"SELECT count(*) FROM {table}")
    if found != total:
        raise Misbehaviour(f"{table}: {found} rows after inserting {total}")


async def _ours(
    ctx: Context, dsn: str, admin: asyncpg.Connection, total: int, seconds: float
) -> dict[str, float]:
    from tests.fakes.runpod_v2 import run_fake_runpod

    desired = min(MAX_WORKERS, math.ceil(total / THRESHOLD))
    async with run_fake_runpod(rate_limit_quota=1_000_000, clock=time.time) as fake:
        reactor = ReactorProcess(
            reactor_env(
                dsn,
                ctx.worker_dsn(dsn),
                fake,
                MAX_ACTIVE_GPUS=str(MAX_WORKERS),
                TASKS_PER_GPU_THRESHOLD=str(THRESHOLD),
            )
        )
        await reactor.start()
        try:
            cpu0, rec0 = reactor.cpu_seconds(), len(reactor.reconciles())
            async with QueueSampler(dsn, "gpu_reactor", "task_queued") as sampler:
                started = time.time()
                insert_sec = await _storm(dsn, "tasks", total, seconds)
                last_insert = time.time()
                call = await fake.wait_for_create(timeout=60, count=desired)
                await asyncio.sleep(1.0)  # let the reactor finish what the storm started
            cpu = reactor.cpu_seconds() - cpu0
            reconciles = len(reactor.reconciles()) - rec0
            creates = len(fake.create_calls)
        finally:
            await reactor.stop()
    await _count(admin, "tasks", total)
    if creates > desired:
        raise Misbehaviour(f"{creates} create calls for {desired} desired workers")
    return {
        "insert_rate": total / insert_sec,
        "insert_sec": insert_sec,
        "notifications": sampler.received,
        "peak_queue_ppm": sampler.peak * 1e6,
        "reconciles": reconciles,
        "reactor_cpu_sec": cpu,
        "desired_after_start_sec": call.time - started,
        "desired_after_last_insert_sec": call.time - last_insert,
    }


async def _peer(
    dsn: str, admin: asyncpg.Connection, total: int, seconds: float
) -> dict[str, float]:
    async with QueueSampler(dsn, "bench_row") as sampler:
        insert_sec = await _storm(dsn, "tasks_notify", total, seconds)

        async def drained() -> bool:
            return sampler.received >= total

        with contextlib.suppress(TimeoutError):
            from bench.common import wait_until

            await wait_until(drained, timeout=30, interval=0.05, what="row notifications")
    await _count(admin, "tasks_notify", total)
    return {
        "insert_rate": total / insert_sec,
        "insert_sec": insert_sec,
        "notifications": sampler.received,
        "peak_queue_ppm": sampler.peak * 1e6,
    }


async def _reset(admin: asyncpg.Connection) -> None:
    await admin.execute("TRUNCATE tasks, tasks_notify")
    await admin.execute("DELETE FROM workers")
    await admin.execute("CHECKPOINT")


async def run(ctx: Context) -> dict[str, Any]:
    require("tests.fakes.runpod_v2", "the fake Runpod v2 server")
    require("reactor.providers.runpod", "the Runpod provider")
    total = ctx.size(100_000, 10_000, 3_000)
    seconds = ctx.size(10, 2, 1)
    runs = ctx.size(3, 2, 1)
    ours: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    async with ctx.database("bench_storm") as dsn:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(PEER_SETUP)
            for i in range(runs):
                steps: list[tuple[list[dict[str, float]], Callable[[], Awaitable[Any]]]] = [
                    (ours, lambda: _ours(ctx, dsn, admin, total, seconds)),
                    (peer, lambda: _peer(dsn, admin, total, seconds)),
                ]
                for into, step in steps if i % 2 == 0 else steps[::-1]:
                    await _reset(admin)
                    into.append(await step())
            await _reset(admin)
        finally:
            await admin.close()
    return _report(ours, peer, total, seconds)


def _col(runs: list[dict[str, float]], key: str) -> dict[str, Any]:
    return summary([r[key] for r in runs if key in r])


def _report(
    ours: list[dict[str, float]], peer: list[dict[str, float]], total: int, seconds: float
) -> dict[str, Any]:
    desired = min(MAX_WORKERS, math.ceil(total / THRESHOLD))
    rows = []
    figures: dict[str, Any] = {}
    spec = [
        ("insert_rate", "tasks inserted per second", 0),
        ("notifications", "notifications sent for the tasks", 0),
        ("peak_queue_ppm", "peak pg_notification_queue_usage(), millionths", 1),
        ("reconciles", "reconciles", 0),
        ("reactor_cpu_sec", "reactor CPU seconds", 2),
        ("desired_after_start_sec", f"s until the {desired}th create call (from start)", 2),
        ("desired_after_last_insert_sec", "… after the last insert", 2),
    ]
    for key, label, digits in spec:
        a, b = _col(ours, key), _col(peer, key)
        ratio = (a["median"] / b["median"]) if a["median"] is not None and b["median"] else None
        figures[key] = {"ours": a, "peer": b, "ratio": ratio}
        peer_text = spread(b, digits) if b["median"] is not None else "-"
        if key == "desired_after_last_insert_sec":
            peer_text = "seed poll: up to 30 (not measured)"
        rows.append([label, spread(a, digits), peer_text, fmt(ratio, 3)])
    table = render_table(
        f"Storm: {total:,} tasks in ~{seconds} s (80 % in batches, 20 % single rows on "
        f"{SINGLE_CONNECTIONS} connections); median (min–max) of {len(ours)} run(s)",
        [
            "figure",
            "ours (doorbell, reactor running)",
            "peer: row-level NOTIFY + listener",
            "ours/peer",
        ],
        rows,
    )
    return {
        "name": NAME,
        "tasks": total,
        "seconds": seconds,
        "desired_workers": desired,
        "figures": figures,
        "runs": {"ours": ours, "peer": peer},
        "headline": {k: figures[k]["ours"]["median"] for k, _, _ in spec},
        "table": table,
    }
