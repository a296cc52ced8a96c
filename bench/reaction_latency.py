"""1. Reaction latency on an idle system, one task at a time.

(a) insert commit -> the fake Runpod v2 server receiving the reactor's create call (the
    reactor in its own process, provider runpod, one task per worker, no worker idle),
    on an idle reactor (no reconcile for longer than its widest coalescing window), and
    again with tasks ~0.15 s apart, which shows what the coalescing window costs;
(b) insert commit -> an idle worker (``python -m worker``, least-privilege login) starting
    the task: its processor records the moment it is called;
peer: pgqueuer enqueue -> its entrypoint starting, a PgQueuer consumer in its own process
    on the same database, samples interleaved with (b);
reference: the seed system polled every 30 s, so a task waited 15 s on average (not
    measured: uniform arrivals against a 30 s poll).

Clocks: the bench, the fake and the worker read the same
machine's wall clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg

from bench.common import (
    Context,
    NotRun,
    fmt,
    percentile,
    percentiles,
    render_table,
    require,
    spread,
    start_worker,
    stop_process,
    summary,
    wait_until,
)
from bench.pgq_consumer import PgqConsumer
from bench.reactor_proc import ReactorProcess
from reactor.domain.wake import MAX_COALESCE_WINDOW

NAME = "reaction_latency"
TARGET_P99_MS = 25.0
SEED_POLL_SEC = 30.0
SAMPLE_TIMEOUT = 10.0
START_TYPE = "bench_start"
QUIET_SEC = MAX_COALESCE_WINDOW + 0.05
PGQ_ENTRYPOINT = "bench_latency"


async def started(params: Any) -> dict[str, float]:
    """Worker processor (WORKER_PROCESSORS=bench_start=bench.reaction_latency:started)."""
    return {"started_at": time.time()}


def reactor_env(dsn: str, worker_dsn: str, fake: Any, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "WORKER_DATABASE_URL": worker_dsn,
        "REACTOR_PROVIDER": "runpod",
        "RUNPOD_API_URL": fake.url,
        "RUNPOD_API_KEY": fake.api_key,
        "RUNPOD_GPU_TYPES": "NVIDIA A40",
        "GPU_HOURLY_PRICE_USD": "0.4",
        **extra,
    }


async def _armed(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT armed FROM gpu_reactor.doorbell"))


async def _settle(conn: asyncpg.Connection) -> None:
    await wait_until(lambda: _armed(conn), timeout=SAMPLE_TIMEOUT, what="the doorbell re-armed")
    await asyncio.sleep(0.1 + random.random() * 0.05)


# --- (a) insert -> create call ---------------------------------------------------------------


async def _quiet(conn: asyncpg.Connection, reactor: ReactorProcess) -> None:
    """Idle: the bell armed and no reconcile for longer than the widest coalescing window."""

    async def quiet() -> bool:
        last = max((e["t"] for e in reactor.reconciles()), default=0.0)
        return time.time() - last >= QUIET_SEC and await _armed(conn)

    await wait_until(quiet, timeout=SAMPLE_TIMEOUT, interval=0.01, what="a quiet reactor")
    await asyncio.sleep(random.random() * 0.02)


async def _create_sample(
    conn: asyncpg.Connection, fake: Any, reactor: ReactorProcess, idle: bool
) -> float:
    await (_quiet(conn, reactor) if idle else _settle(conn))
    before, events = len(fake.create_calls), len(reactor.events)
    await conn.execute("INSERT INTO tasks (task_type) VALUES ('bench_create')")
    committed = time.time()
    call = await fake.wait_until(
        lambda: fake.create_calls[before] if len(fake.create_calls) > before else None,
        SAMPLE_TIMEOUT,
        "the reactor's create call",
    )
    done = await reactor.wait_for(
        lambda e: e["event"] == "reconcile" and any(a[0] == "spawn" for a in e["actions"]),
        after=events,
        timeout=SAMPLE_TIMEOUT,
        what="the spawn to finish",
    )
    outcomes = [a[1] for a in done["actions"] if a[0] == "spawn"]
    if outcomes != ["ok"]:
        raise RuntimeError(f"spawn did not succeed: {outcomes}")
    # Back to idle: the task is withdrawn, the pod's worker row ended (the sweep
    # terminates the pod later, as it would any pod no live row explains).
    await conn.execute("UPDATE tasks SET status = 'Cancelled' WHERE status = 'Queued'")
    await conn.execute(
        "UPDATE workers SET status = 'terminated', terminated_at = now() "
        "WHERE status IN ('spawning', 'active', 'terminating')"
    )
    return (call.time - committed) * 1000


async def _create_path(
    ctx: Context, dsn: str, conn: asyncpg.Connection, idle_samples: int, spaced_samples: int
) -> tuple[list[float], list[float]]:
    from tests.fakes.runpod_v2 import run_fake_runpod

    async with run_fake_runpod(rate_limit_quota=1_000_000, clock=time.time) as fake:
        reactor = ReactorProcess(
            reactor_env(
                dsn, ctx.worker_dsn(dsn), fake, MAX_ACTIVE_GPUS="10", TASKS_PER_GPU_THRESHOLD="1"
            )
        )
        await reactor.start()
        try:
            await _create_sample(conn, fake, reactor, True)  # warm-up: HTTP session, plans
            idle = [await _create_sample(conn, fake, reactor, True) for _ in range(idle_samples)]
            spaced = [
                await _create_sample(conn, fake, reactor, False) for _ in range(spaced_samples)
            ]
            return idle, spaced
        finally:
            await reactor.stop()


# --- (b) insert -> idle worker starts; pgqueuer enqueue -> entrypoint ------------------------


async def _worker_sample(conn: asyncpg.Connection) -> float:
    await _settle(conn)
    task_id = await conn.fetchval(
        f"INSERT INTO tasks (task_type) VALUES ('{START_TYPE}') RETURNING id"
    )
    committed = time.time()

    async def complete() -> bool:
        return bool(
            await conn.fetchval("SELECT status = 'Complete' FROM tasks WHERE id = $1", task_id)
        )

    await wait_until(complete, timeout=SAMPLE_TIMEOUT, interval=0.01, what="the worker")
    started_at = await conn.fetchval(
        "SELECT (result_data ->> 'started_at')::float8 FROM tasks WHERE id = $1", task_id
    )
    return (started_at - committed) * 1000


async def _pgq_sample(consumer: PgqConsumer, queries: Any, *, settle: bool = True) -> float:
    if settle:
        await asyncio.sleep(0.1 + random.random() * 0.05)
    job_id = str((await queries.enqueue(PGQ_ENTRYPOINT, None))[0])
    committed = time.time()
    started_at, _ = await consumer.wait_started(job_id, SAMPLE_TIMEOUT)
    return (started_at - committed) * 1000


async def _worker_and_pgqueuer(
    ctx: Context, dsn: str, conn: asyncpg.Connection, samples: int
) -> tuple[list[float], list[float]]:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    from tests.fakes.runpod_v2 import run_fake_runpod

    pgq_conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(pgq_conn))
    await queries.install()
    consumer = PgqConsumer(dsn, PGQ_ENTRYPOINT)
    worker = None
    async with run_fake_runpod(rate_limit_quota=1_000_000, clock=time.time) as fake:
        reactor = ReactorProcess(
            reactor_env(
                dsn, ctx.worker_dsn(dsn), fake, MAX_ACTIVE_GPUS="10", TASKS_PER_GPU_THRESHOLD="1"
            )
        )
        try:
            await reactor.start()
            worker = await start_worker(
                {
                    "WORKER_ID": "bench-idle-worker",
                    "DATABASE_URL": ctx.worker_dsn(dsn),
                    "WORKER_PROCESSORS": f"{START_TYPE}=bench.reaction_latency:started",
                }
            )
            await consumer.start()

            async def registered() -> bool:
                return (
                    await conn.fetchval("SELECT status FROM workers WHERE id = 'bench-idle-worker'")
                    == "active"
                )

            await wait_until(registered, timeout=30, interval=0.05, what="the worker's first beat")
            await _worker_sample(conn)  # warm-up: the worker is up, connected and idle
            await _pgq_sample(consumer, queries, settle=False)
            ours, peer = [], []
            for i in range(samples):
                for system in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
                    if system == "ours":
                        ours.append(await _worker_sample(conn))
                    else:
                        peer.append(await _pgq_sample(consumer, queries))
            if len(fake.create_calls):
                raise RuntimeError("the reactor spawned although a worker was idle")
            return ours, peer
        finally:
            await consumer.stop()
            await stop_process(worker, grace=10)
            await reactor.stop()
            await pgq_conn.close()


async def run(ctx: Context) -> dict[str, Any]:
    require("tests.fakes.runpod_v2", "the fake Runpod v2 server")
    require("reactor.providers.runpod", "the Runpod provider")
    idle_samples = ctx.size(100, 15, 5)
    spaced_samples = ctx.size(30, 6, 3)
    samples = ctx.size(150, 30, 8)
    notes: list[str] = []
    async with ctx.database("bench_latency") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            create, spaced = await _create_path(ctx, dsn, conn, idle_samples, spaced_samples)
            await conn.execute("DELETE FROM workers")
            try:
                require("worker.main", "the worker")
            except NotRun as exc:
                worker, pgq = [], []
                notes.append(f"worker path not run: {exc}")
            else:
                worker, pgq = await _worker_and_pgqueuer(ctx, dsn, conn, samples)
        finally:
            await conn.close()
    return _report(create, spaced, worker, pgq, notes)


def _row(label: str, values: list[float], blocks: int, target: bool) -> list[str]:
    p = percentiles(values)
    size = max(1, -(-len(values) // blocks))
    per_block = summary(
        [percentile(values[i : i + size], 99) or 0.0 for i in range(0, len(values), size)]
        if values
        else []
    )
    verdict = ""
    if target and p["p99"] is not None:
        verdict = "met" if p["p99"] < TARGET_P99_MS else "MISSED"
    return [
        label,
        fmt(p["p50"], 2),
        fmt(p["p90"], 2),
        fmt(p["p99"], 2),
        fmt(p["max"], 2),
        spread(per_block, 2),
        str(p["samples"]),
        verdict,
    ]


def _report(
    create: list[float],
    spaced: list[float],
    worker: list[float],
    pgq: list[float],
    notes: list[str],
) -> dict[str, Any]:
    blocks = 4
    seed = {"p50": SEED_POLL_SEC * 500, "p90": SEED_POLL_SEC * 900, "p99": SEED_POLL_SEC * 990}
    rows = [
        _row("ours: insert → Runpod create call (idle reactor)", create, blocks, True),
        _row("ours: insert → create call, tasks ~0.15 s apart", spaced, blocks, False),
        _row("ours: insert → idle worker starts the task", worker, blocks, True),
        _row("pgqueuer: enqueue → entrypoint starts", pgq, blocks, False),
        [
            "seed: 30 s poll (expected, not measured)",
            fmt(seed["p50"], 0),
            fmt(seed["p90"], 0),
            fmt(seed["p99"], 0),
            fmt(SEED_POLL_SEC * 1000, 0),
            "-",
            "-",
            "",
        ],
    ]
    c, w, q = percentiles(create), percentiles(worker), percentiles(pgq)
    ratios = {k: (w[k] / q[k]) if w[k] and q[k] else None for k in ("p50", "p99")}
    table = render_table(
        f"Reaction latency, ms (one task at a time; target p99 < {TARGET_P99_MS:g} ms)",
        [
            "path",
            "p50",
            "p90",
            "p99",
            "max",
            f"p99 of {blocks} runs: median (min–max)",
            "samples",
            "target",
        ],
        rows,
    )
    table += (
        f"\nIdle reactor: no reconcile for {QUIET_SEC:g} s (its widest coalescing window) "
        f"before each insert. Worker and pgqueuer samples interleaved, 0.10–0.15 s apart. "
        f"ours (worker) / pgqueuer: p50 {fmt(ratios['p50'], 2)}, p99 "
        f"{fmt(ratios['p99'], 2)}. Seed poll / ours (create call) at p50: "
        f"{fmt(seed['p50'] / c['p50'], 0) if c['p50'] else '-'}×.\n"
    )
    met = all(v is not None and v < TARGET_P99_MS for v in (c["p99"], w["p99"]))
    return {
        "name": NAME,
        "figures": {
            "create_call_idle_ms": c,
            "create_call_spaced_ms": percentiles(spaced),
            "worker_start_ms": w,
            "pgqueuer_start_ms": q,
            "seed_poll_expected_ms": seed,
            "worker_over_pgqueuer": ratios,
        },
        "raw_ms": {
            "create_call_idle": create,
            "create_call_spaced": spaced,
            "worker_start": worker,
            "pgqueuer_start": pgq,
        },
        "target": {
            "what": "p99 < 25 ms",
            "create_call_p99": c["p99"],
            "worker_start_p99": w["p99"],
            "met": met,
        },
        "headline": {
            "create_p50_ms": c["p50"],
            "create_p99_ms": c["p99"],
            "worker_p99_ms": w["p99"],
            "pgqueuer_p99_ms": q["p99"],
        },
        "notes": notes,
        "table": table,
    }
