"""2. Insert overhead on the application.

Concurrent single-row INSERT transactions per second into three copies of the tasks
table: (a) gpu-reactor's, with its statement-level doorbell trigger; (b) the same table
with no trigger; (c) the same table with a plain row-level pg_notify trigger (what most
queue systems do), with one LISTEN connection consuming its notifications. (a) runs
twice: with the real reactor running beside it (in its own process, listening, re-arming
the doorbell at every reconcile, never spawning), and with the doorbell left disarmed
(what the trigger costs at least). The reactor process runs during every variant, so
they all share the same background.

pgbench drives the load where it exists (a C client, so the client is not what limits
the figure); otherwise asyncpg connections in this process do.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Context, find_pgbench, fmt, render_table, spread, summary
from bench.reactor_proc import ReactorProcess

NAME = "insert_overhead"
TARGET_RATIO = 0.9  # a/b at 8 clients

VARIANTS = {
    "a": "tasks (gpu-reactor triggers, a reactor listening and re-arming the doorbell)",
    "a_idle": "tasks (gpu-reactor triggers, doorbell disarmed: the trigger's floor cost)",
    "b": "tasks_plain (no trigger)",
    "c": "tasks_notify (row-level pg_notify trigger)",
}
TABLE = {"a": "tasks", "a_idle": "tasks", "b": "tasks_plain", "c": "tasks_notify"}

SETUP = """
CREATE TABLE tasks_plain (LIKE tasks INCLUDING ALL);
CREATE TABLE tasks_notify (LIKE tasks INCLUDING ALL);
CREATE FUNCTION bench_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_row',
                      json_build_object('id', NEW.id, 'task_type', NEW.task_type)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_notify_row AFTER INSERT ON tasks_notify
    FOR EACH ROW EXECUTE FUNCTION bench_notify_row();
-- Every run starts from an empty table: keep autovacuum's timing out of the comparison.
ALTER TABLE tasks SET (autovacuum_enabled = false);
ALTER TABLE tasks_plain SET (autovacuum_enabled = false);
ALTER TABLE tasks_notify SET (autovacuum_enabled = false);
"""

INSERT = "INSERT INTO {table} (task_type, params) VALUES ('bench', '{{\"n\": 1}}')"


class RowListener:
    """The consumer a row-level NOTIFY design has: one LISTEN connection on its channel."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.received = 0
        self._conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener("bench_row", self._on_row)

    def _on_row(self, *_: Any) -> None:
        self.received += 1

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def _pgbench(
    pgbench: str, ctx: Context, dbname: str, script: Path, clients: int, seconds: int
) -> float:
    proc = await asyncio.create_subprocess_exec(
        pgbench,
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(seconds),
        "-f",
        str(script),
        "-h",
        "127.0.0.1",
        "-p",
        str(ctx.pg.port),
        "-U",
        "postgres",
        dbname,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode()
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {err.decode()[-500:]}")
    return float(match.group(1))


async def _asyncpg_load(dsn: str, sql: str, clients: int, seconds: float) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def client(conn: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await conn.execute(sql)
            done += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    return done / (time.perf_counter() - started)


async def _reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE tasks, tasks_plain, tasks_notify")
    await conn.execute("CHECKPOINT")


async def _one_run(
    ctx: Context,
    dsn: str,
    conn: asyncpg.Connection,
    variant: str,
    clients: int,
    seconds: int,
    script: Path,
    pgbench: str | None,
) -> float:
    await _reset(conn)
    # The reactor keeps the bell armed while it waits; a busy reactor leaves it disarmed.
    await conn.execute("UPDATE gpu_reactor.doorbell SET armed = $1", variant != "a_idle")
    if pgbench:
        return await _pgbench(pgbench, ctx, dsn.rsplit("/", 1)[1], script, clients, seconds)
    return await _asyncpg_load(dsn, INSERT.format(table=TABLE[variant]), clients, seconds)


def _reactor_env(dsn: str) -> dict[str, str]:
    """A real reactor that listens and re-arms the bell, but never spawns (no provider)."""
    return {
        "DATABASE_URL": dsn,
        "WORKER_DATABASE_URL": dsn,
        "BENCH_PROVIDER": "null",
        "MAX_ACTIVE_GPUS": "0",
        "SWEEP_INTERVAL_SEC": "3600",
        "LISTENER_CHECK_INTERVAL_SEC": "60",
    }


async def run(ctx: Context) -> dict[str, Any]:
    pgbench = find_pgbench(ctx.pg)
    clients_list = [8] if ctx.tiny else [1, 8] if ctx.quick else [1, 8, 32]
    rounds = ctx.size(5, 2, 1)
    seconds = ctx.size(2, 1)
    tps: dict[str, dict[int, list[float]]] = {v: {c: [] for c in clients_list} for v in VARIANTS}
    rings: dict[int, list[int]] = {c: [] for c in clients_list}
    async with ctx.database("bench_insert") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SETUP)
        listener = RowListener(dsn)
        await listener.open()
        reactor = ReactorProcess(_reactor_env(dsn))
        await reactor.start()
        with tempfile.TemporaryDirectory(prefix="gpu-reactor-bench-") as tmp:
            scripts = {}
            for variant, table in TABLE.items():
                scripts[variant] = Path(tmp) / f"{variant}.sql"
                scripts[variant].write_text(INSERT.format(table=table) + ";\n")
                scripts[variant].chmod(0o644)
            try:
                order = list(VARIANTS)
                for round_no in range(rounds):
                    for clients in clients_list:
                        # Rotate the order each round so drift spreads over every variant.
                        shift = (round_no + clients_list.index(clients)) % len(order)
                        for variant in order[shift:] + order[:shift]:
                            before = len(reactor.reconciles())
                            value = await _one_run(
                                ctx, dsn, conn, variant, clients, seconds, scripts[variant], pgbench
                            )
                            tps[variant][clients].append(value)
                            if variant == "a":
                                rings[clients].append(len(reactor.reconciles()) - before)
            finally:
                await reactor.stop()
                await listener.close()
                await _reset(conn)
                await conn.close()
    return _report(tps, rings, clients_list, rounds, seconds, pgbench)


def _report(
    tps: dict[str, dict[int, list[float]]],
    rings: dict[int, list[int]],
    clients_list: list[int],
    rounds: int,
    seconds: int,
    pgbench: str | None,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rows = []
    for clients in clients_list:
        s = {v: summary(tps[v][clients]) for v in VARIANTS}
        # Ratios per round (interleaved runs), then the median of those ratios.
        ab = summary([a / b for a, b in zip(tps["a"][clients], tps["b"][clients], strict=True)])
        aib = summary(
            [a / b for a, b in zip(tps["a_idle"][clients], tps["b"][clients], strict=True)]
        )
        cb = summary([c / b for c, b in zip(tps["c"][clients], tps["b"][clients], strict=True)])
        target = ""
        if clients == 8:
            met = ab["median"] is not None and ab["median"] >= TARGET_RATIO
            target = f"a/b ≥ {TARGET_RATIO}: {'met' if met else 'MISSED'}"
        figures[str(clients)] = {
            "tps": s,
            "a_over_b": ab,
            "a_idle_over_b": aib,
            "c_over_b": cb,
            "doorbell_rings_per_run": summary(rings[clients]),
        }
        rows.append(
            [
                clients,
                spread(s["a"], 0),
                spread(s["a_idle"], 0),
                spread(s["b"], 0),
                spread(s["c"], 0),
                spread(ab, 2),
                spread(aib, 2),
                spread(cb, 2),
                fmt(summary(rings[clients])["median"], 0),
                target,
            ]
        )
    table = render_table(
        "Insert overhead: single-row INSERT transactions/s (median (min–max))",
        [
            "clients",
            "a: ours",
            "a_idle: ours, bell disarmed",
            "b: no trigger",
            "c: row NOTIFY",
            "a/b",
            "a_idle/b",
            "c/b",
            "reconciles/run (a)",
            "target",
        ],
        rows,
    )
    table += (
        f"\nDriver: {'pgbench ' + pgbench if pgbench else 'asyncpg (pgbench not found)'}; "
        f"{rounds} interleaved round(s) of {seconds} s per cell; tables truncated and "
        f"CHECKPOINT before each run, autovacuum off on them.\n"
    )
    eight = figures.get("8", {})
    ab8 = eight.get("a_over_b", {}).get("median")
    return {
        "name": NAME,
        "figures": figures,
        "variants": VARIANTS,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "driver": pgbench or "asyncpg",
        "target": {
            "what": "a/b >= 0.9 at 8 clients",
            "value": ab8,
            "met": None if ab8 is None else ab8 >= TARGET_RATIO,
        },
        "headline": {
            "a_over_b_8": ab8,
            "a_idle_over_b_8": eight.get("a_idle_over_b", {}).get("median"),
            "c_over_b_8": eight.get("c_over_b", {}).get("median"),
        },
        "table": table,
    }
