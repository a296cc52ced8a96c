"""6. Recovery: a worker SIGKILLed mid-task.

The reactor runs in its own process (provider runpod against the fake server) with
MIN_ACTIVE_GPUS=2 and GPU_IDLE_TIMEOUT_SEC=2; each pod it creates is a real
``python -m worker`` started by the fake's create hook (heartbeat every 0.5 s). One
long task runs on one worker while the other is idle. The bench SIGKILLs the worker
holding the task and measures, from its heartbeat deadline (last heartbeat +
GPU_IDLE_TIMEOUT_SEC): the task requeued (the retire transaction's time), the surviving
worker starting it again, and the replacement pod's create call.

Peer, interleaved: pgqueuer with comparable settings (heartbeat_timeout 2 s, dequeue
timeout 5 s like the worker's default POLL_INTERVAL_SEC), two consumer processes; the
one running the job is SIGKILLed; measured from the job's heartbeat + 2 s to the other
consumer starting it again.

Misbehaviour (exit 1): the task held by two workers at once, or not requeued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from typing import Any

import asyncpg

from bench.common import (
    Context,
    Misbehaviour,
    render_table,
    require,
    spread,
    start_worker,
    stop_process,
    summary,
    wait_until,
)
from bench.pgq_consumer import PgqConsumer
from bench.reaction_latency import reactor_env
from bench.reactor_proc import ReactorProcess

NAME = "recovery"
HEARTBEAT_TIMEOUT = 2.0
HEARTBEAT_INTERVAL = 0.5
PGQ_POLL = 5.0
STEP_TIMEOUT = 30.0
PGQ_ENTRYPOINT = "bench_recover"


class Pods:
    """The fake's create hook: every pod becomes a worker process; terminate stops it."""

    def __init__(self) -> None:
        self.procs: dict[str, asyncio.subprocess.Process] = {}  # worker id -> process

    async def on_create(self, pod: Any) -> None:
        self.procs[pod.name] = await start_worker(dict(pod.env))

    async def on_terminate(self, pod: Any) -> None:
        await stop_process(self.procs.get(pod.name), grace=5)

    def kill(self, worker_id: str) -> None:
        proc = self.procs[worker_id]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        await asyncio.gather(*(stop_process(p, grace=5) for p in self.procs.values()))


async def _holder(conn: asyncpg.Connection, task_id: Any) -> tuple[str | None, int]:
    row = await conn.fetchrow(
        "SELECT status, worker_id, attempts FROM tasks WHERE id = $1", task_id
    )
    return (row["worker_id"] if row["status"] == "In Progress" else None), row["attempts"]


async def _idle_active(conn: asyncpg.Connection, holder: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM workers WHERE status = 'active' AND id <> $1", holder
        )
    )


async def _ours_sample(conn: asyncpg.Connection, fake: Any, pods: Pods, task_id: Any) -> dict:
    holder: dict[str, Any] = {}

    async def running_with_spare() -> bool:
        worker_id, attempts = await _holder(conn, task_id)
        holder.update(worker_id=worker_id, attempts=attempts)
        return (
            worker_id is not None
            and worker_id in pods.procs
            and await _idle_active(conn, worker_id)
        )

    await wait_until(
        running_with_spare,
        timeout=STEP_TIMEOUT,
        interval=0.05,
        what="the task running with a spare worker idle",
    )
    await asyncio.sleep(0.6)  # mid-task: at least one heartbeat since the claim
    victim, attempt = holder["worker_id"], holder["attempts"]
    creates = len(fake.create_calls)
    pods.kill(victim)

    async def restarted() -> bool:
        worker_id, attempts = await _holder(conn, task_id)
        return worker_id is not None and attempts > attempt

    await wait_until(restarted, timeout=STEP_TIMEOUT, interval=0.01, what="the task restarted")
    call = await fake.wait_for_create(timeout=STEP_TIMEOUT, count=creates + 1)
    row = await conn.fetchrow(
        "SELECT w.last_heartbeat, w.terminated_at, w.status, t.worker_id, t.attempts, "
        "t.generation_started_at, t.error_message FROM workers w, tasks t "
        "WHERE w.id = $1 AND t.id = $2",
        victim,
        task_id,
    )
    if row["status"] != "error" or row["worker_id"] == victim or row["attempts"] != attempt + 1:
        raise Misbehaviour(
            f"after killing {victim}: worker {row['status']}, task held by "
            f"{row['worker_id']} on attempt {row['attempts']}"
        )
    deadline = row["last_heartbeat"].timestamp() + HEARTBEAT_TIMEOUT
    return {
        "requeued_sec": row["terminated_at"].timestamp() - deadline,
        "restarted_sec": row["generation_started_at"].timestamp() - deadline,
        "create_call_sec": call.time - deadline,
    }


async def _peer_sample(
    conn: asyncpg.Connection, queries: Any, consumers: list[PgqConsumer], dsn: str
) -> dict:
    job_id = str((await queries.enqueue(PGQ_ENTRYPOINT, None))[0])
    _, pid = await _started_by(consumers, job_id)
    await asyncio.sleep(0.6)
    victim = next(c for c in consumers if c.proc is not None and c.proc.pid == pid)
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    beat = await conn.fetchval("SELECT heartbeat FROM pgqueuer WHERE id = $1", int(job_id))
    victim.started.pop(job_id, None)
    survivors = [c for c in consumers if c is not victim]
    restarted_at, _ = await _started_by(survivors, job_id, timeout=STEP_TIMEOUT)
    await conn.execute("DELETE FROM pgqueuer WHERE id = $1", int(job_id))
    await stop_process(victim.proc)
    consumers.remove(victim)
    replacement = PgqConsumer(
        dsn,
        PGQ_ENTRYPOINT,
        sleep_sec=600,
        heartbeat_sec=HEARTBEAT_TIMEOUT,
        dequeue_timeout_sec=PGQ_POLL,
    )
    await replacement.start()
    consumers.append(replacement)
    return {"restarted_sec": restarted_at - (beat.timestamp() + HEARTBEAT_TIMEOUT)}


async def _started_by(
    consumers: list[PgqConsumer], job_id: str, timeout: float = 10.0
) -> tuple[float, int]:
    async def seen() -> bool:
        return any(job_id in c.started for c in consumers)

    await wait_until(seen, timeout=timeout, interval=0.005, what="a pgqueuer consumer")
    return next(c.started[job_id] for c in consumers if job_id in c.started)


async def run(ctx: Context) -> dict[str, Any]:
    require("tests.fakes.runpod_v2", "the fake Runpod v2 server")
    require("reactor.providers.runpod", "the Runpod provider")
    require("worker.main", "the worker")
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    from tests.fakes.runpod_v2 import run_fake_runpod

    samples = ctx.size(5, 1, 1)
    ours: list[dict] = []
    peer: list[dict] = []
    pods = Pods()
    async with ctx.database("bench_recovery") as dsn:
        conn = await asyncpg.connect(dsn)
        pgq_conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(pgq_conn))
        await queries.install()
        consumers = [
            PgqConsumer(
                dsn,
                PGQ_ENTRYPOINT,
                sleep_sec=600,
                heartbeat_sec=HEARTBEAT_TIMEOUT,
                dequeue_timeout_sec=PGQ_POLL,
            )
            for _ in range(2)
        ]
        try:
            async with run_fake_runpod(
                rate_limit_quota=1_000_000,
                clock=time.time,
                on_create=pods.on_create,
                on_terminate=pods.on_terminate,
            ) as fake:
                extra = json.dumps({"HEARTBEAT_INTERVAL_SEC": str(HEARTBEAT_INTERVAL)})
                reactor = ReactorProcess(
                    reactor_env(
                        dsn,
                        ctx.worker_dsn(dsn),
                        fake,
                        MIN_ACTIVE_GPUS="2",
                        MAX_ACTIVE_GPUS="3",
                        GPU_IDLE_TIMEOUT_SEC=str(HEARTBEAT_TIMEOUT),
                        WORKER_EXTRA_ENV=extra,
                    )
                )
                try:
                    await reactor.start()
                    for consumer in consumers:
                        await consumer.start()
                    task_id = await conn.fetchval(
                        "INSERT INTO tasks (task_type, params, max_attempts) VALUES "
                        "('sleep', '{\"seconds\": 600}', 1000) RETURNING id"
                    )
                    for i in range(samples):
                        steps = [
                            (ours, lambda: _ours_sample(conn, fake, pods, task_id)),
                            (peer, lambda: _peer_sample(pgq_conn, queries, consumers, dsn)),
                        ]
                        for into, step in steps if i % 2 == 0 else steps[::-1]:
                            into.append(await step())
                finally:
                    await reactor.stop()
                    await pods.close()
        finally:
            for consumer in consumers:
                await consumer.stop()
            await pgq_conn.close()
            await conn.close()
    return _report(ours, peer)


def _report(ours: list[dict], peer: list[dict]) -> dict[str, Any]:
    def col(runs: list[dict], key: str) -> dict[str, Any]:
        return summary([r[key] * 1000 for r in runs])

    figures = {
        "requeued_ms": col(ours, "requeued_sec"),
        "restarted_ms": col(ours, "restarted_sec"),
        "create_call_ms": col(ours, "create_call_sec"),
        "pgqueuer_restarted_ms": col(peer, "restarted_sec"),
    }
    ratio = None
    if figures["restarted_ms"]["median"] and figures["pgqueuer_restarted_ms"]["median"]:
        ratio = figures["restarted_ms"]["median"] / figures["pgqueuer_restarted_ms"]["median"]
    rows = [
        ["task requeued", spread(figures["requeued_ms"], 0), "-", "-"],
        [
            "task started again by an idle worker",
            spread(figures["restarted_ms"], 0),
            spread(figures["pgqueuer_restarted_ms"], 0),
            f"{ratio:.3f}" if ratio is not None else "-",
        ],
        ["replacement pod's create call", spread(figures["create_call_ms"], 0), "-", "-"],
    ]
    table = render_table(
        f"Recovery after SIGKILL mid-task: ms after the heartbeat deadline (last beat + "
        f"{HEARTBEAT_TIMEOUT:g} s), median (min–max) of {len(ours)} kill(s)",
        ["step", "ours", f"pgqueuer (heartbeat 2 s, poll {PGQ_POLL:g} s)", "ours/pgqueuer"],
        rows,
    )
    return {
        "name": NAME,
        "figures": figures,
        "ours_over_pgqueuer": ratio,
        "runs": {"ours": ours, "peer": peer},
        "headline": {k: v["median"] for k, v in figures.items()},
        "table": table,
    }
