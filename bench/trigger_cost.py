"""2b. What the insert trigger costs, in instructions: a figure the machine's load cannot move.

Transactions per second on a shared 2-core machine move by ±10 % from run to run, more
than the differences between trigger designs. So this counts the instructions PostgreSQL
executes per single-row INSERT transaction (valgrind's callgrind, single-user
``postgres --single``, one autocommitted INSERT per line), as the difference between N2
and N1 inserts divided by N2 - N1, so start-up and shutdown cancel out. It isolates the
trigger's cost from the client's and from contention; it says nothing about waits.

Tables (each a copy of tasks with one INSERT trigger, except ``ours``, the migrated tasks
table itself), the doorbell disarmed, as it is for almost every insert:
``none`` no trigger; ``ours`` gpu-reactor today (sql/schema.sql: a SECURITY INVOKER
plpgsql trigger reads the bell, names qualified, no SET clause); ``in_0010`` the
0010-0014 trigger (the same body, SECURITY DEFINER with SET search_path); ``when`` a
``WHEN (bell_armed())`` condition on the statement trigger calling a plpgsql function
that reads the bell, so no trigger function runs while it is disarmed (measured, not
shipped: the condition costs more than the call it saves); ``before_0010`` the 0005
design (a SECURITY DEFINER trigger calling a SECURITY DEFINER function that reads the
bell, both with SET search_path); ``empty`` an
empty statement-level plpgsql trigger, the floor of any trigger function;
``row_notify`` a row-level pg_notify trigger (c of insert_overhead).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Context, NotRun, fmt, render_table
from reactor.db.embedded import EmbeddedPostgres
from reactor.db.migrate import migrate

NAME = "trigger_cost"
INSERT = "INSERT INTO {table} (task_type, params) VALUES ('bench', '{{\"n\": 1}}');\n"
SECDEF_PINNED = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
READ_AND_RING = "PERFORM gpu_reactor.ring('task_queued') FROM gpu_reactor.doorbell WHERE armed;"

VARIANTS = {
    "none": "no trigger",
    "ours": "gpu-reactor (schema.sql): SECURITY INVOKER trigger reads the bell",
    "in_0010": "0010-0014: the same, SECURITY DEFINER + SET search_path",
    "when": "WHEN (bell_armed()) on the trigger, a plpgsql function reads the bell",
    "before_0010": "0005: trigger and bell check both SECURITY DEFINER + SET search_path",
    "empty": "empty FOR EACH STATEMENT plpgsql trigger (floor of any trigger function)",
    "row_notify": "row-level pg_notify trigger",
}


def _function(name: str, attributes: str, body: str) -> str:
    return (
        f"CREATE FUNCTION bench_{name}() RETURNS trigger LANGUAGE plpgsql {attributes} "
        f"AS $f$ BEGIN {body} RETURN NULL; END $f$;"
    )


def _copy(name: str, level: str = "STATEMENT") -> str:
    return (
        f"CREATE TABLE t_{name} (LIKE tasks INCLUDING ALL);"
        f"CREATE TRIGGER bench_{name} AFTER INSERT ON t_{name} "
        f"FOR EACH {level} EXECUTE FUNCTION bench_{name}();"
    )


def setup_sql(schema: str) -> str:
    return "\n".join(
        [
            "CREATE TABLE t_none (LIKE tasks INCLUDING ALL);",
            # 0005's gpu_reactor_ring: a SECURITY DEFINER function that reads the bell first.
            "CREATE FUNCTION bench_ring_0005() RETURNS void LANGUAGE plpgsql "
            f"{SECDEF_PINNED} AS $f$ BEGIN IF coalesce((SELECT armed FROM gpu_reactor.doorbell),"
            " false) THEN PERFORM gpu_reactor.ring('task_queued'); END IF; END $f$;",
            _function("before_0010", SECDEF_PINNED, "PERFORM public.bench_ring_0005();"),
            _copy("before_0010"),
            _function("in_0010", SECDEF_PINNED, READ_AND_RING),
            _copy("in_0010"),
            "CREATE FUNCTION bench_bell_armed() RETURNS boolean LANGUAGE plpgsql STABLE AS $f$"
            " BEGIN RETURN coalesce((SELECT armed FROM gpu_reactor.doorbell), false); END $f$;",
            _function("when", "", "PERFORM gpu_reactor.ring('task_queued');"),
            "CREATE TABLE t_when (LIKE tasks INCLUDING ALL);"
            "CREATE TRIGGER bench_when AFTER INSERT ON t_when FOR EACH STATEMENT"
            " WHEN (public.bench_bell_armed()) EXECUTE FUNCTION bench_when();",
            _function("empty", "", ""),
            _copy("empty"),
            _function(
                "row_notify",
                "",
                "PERFORM pg_notify('bench_row', json_build_object("
                "'id', NEW.id, 'task_type', NEW.task_type)::text);",
            ),
            _copy("row_notify", "ROW"),
            "UPDATE gpu_reactor.doorbell SET armed = false;",
        ]
    )


def _table(variant: str) -> str:
    return "tasks" if variant == "ours" else f"t_{variant}"


def _instructions(pg: EmbeddedPostgres, valgrind: str, variant: str, inserts: int) -> int:
    """Instructions of one single-user postgres run of ``inserts`` autocommitted INSERTs."""
    assert pg.bindir is not None
    owner = os.stat(pg.datadir).st_uid  # the user the embedded cluster runs as
    ids: dict[str, Any] = {}
    if os.geteuid() != owner:
        ids = {"user": owner, "group": pwd.getpwuid(owner).pw_gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as script:
        script.write(INSERT.format(table=_table(variant)) * inserts)
        script.seek(0)
        run = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                str(pg.bindir / "postgres"),
                "--single",
                "-D",
                str(pg.datadir),
                "-c",
                "fsync=off",
                "postgres",
            ],
            stdin=script,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
            cwd="/",
            check=False,
            **ids,
        )
    match = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or match is None:
        raise RuntimeError(
            f"valgrind postgres --single failed ({run.returncode}): {run.stderr[-500:]}"
        )
    return int(match.group(1))


async def _prepare(pg: EmbeddedPostgres) -> None:
    dsn = await asyncio.to_thread(pg.start)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute(setup_sql(await conn.fetchval("SELECT current_schema()")))
        await conn.execute("VACUUM ANALYZE gpu_reactor.doorbell")
    finally:
        await conn.close()
    await asyncio.to_thread(pg.stop)


async def run(ctx: Context) -> dict[str, Any]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise NotRun("valgrind is not installed (apt-get install valgrind)")
    low, high = ctx.size(100, 50, 20), ctx.size(600, 300, 120)
    per_tx: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-reactor-bench-cg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", fast=True)
        try:
            await _prepare(pg)
            for variant in VARIANTS:
                counts = [
                    await asyncio.to_thread(_instructions, pg, valgrind, variant, n)
                    for n in (low, high)
                ]
                per_tx[variant] = (counts[1] - counts[0]) / (high - low)
        finally:
            await asyncio.to_thread(pg.destroy)
    return _report(per_tx, low, high)


def _report(per_tx: dict[str, float], low: int, high: int) -> dict[str, Any]:
    base = per_tx["none"]
    figures = {
        v: {
            "instructions_per_tx": round(n),
            "added": round(n - base),
            "added_fraction": (n - base) / base,
        }
        for v, n in per_tx.items()
    }
    rows = [
        [v, VARIANTS[v], fmt(round(n)), fmt(round(n - base)), f"{(n - base) / base:+.0%}"]
        for v, n in per_tx.items()
    ]
    table = render_table(
        "Trigger cost: instructions per single-row INSERT transaction (callgrind)",
        ["table", "trigger", "instructions/tx", "added by the trigger", "vs none"],
        rows,
    )
    table += (
        f"\nSingle-user postgres under callgrind, ({high} - {low}) autocommitted "
        f"INSERTs; the doorbell disarmed. Deterministic: the machine's load does not "
        f"move it.\n"
    )
    ours, before = figures["ours"]["added"], figures["in_0010"]["added"]
    return {
        "name": NAME,
        "figures": figures,
        "variants": VARIANTS,
        "inserts": [low, high],
        "headline": {
            "ours_added": ours,
            "in_0010_added": before,
            "before_0010_added": figures["before_0010"]["added"],
            "empty_trigger_added": figures["empty"]["added"],
            "no_trigger_instructions": round(base),
        },
        "table": table,
    }
