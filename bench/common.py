"""What every benchmark shares: the Postgres it runs on, statistics, tables, results.

A benchmark module exposes ``NAME`` and ``async def run(ctx: Context) -> dict``. The
dict it returns is written to ``bench/results/<NAME>.json``; its ``table`` is printed.
Benchmarks never fail on a figure; they raise ``Misbehaviour`` when the system does
something wrong (a task lost or claimed twice), which makes ``python -m bench`` exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from reactor.db.embedded import EmbeddedPostgres
from reactor.db.migrate import migrate

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WORKER_LOGIN = "bench_gpu_worker"
WORKER_PASSWORD = "bench-worker-password"


class Misbehaviour(Exception):
    """The system under test did something wrong (not slow: wrong)."""


class NotRun(Exception):
    """A benchmark cannot run here; the message says why."""


@dataclass
class Context:
    """One benchmark run's Postgres and sizes."""

    pg: EmbeddedPostgres
    admin_dsn: str
    quick: bool = False
    tiny: bool = False
    durable: bool = True  # fsync and synchronous_commit on
    notes: list[str] = field(default_factory=list)

    def size(self, full: int, quick: int, tiny: int | None = None) -> int:
        if self.tiny:
            return tiny if tiny is not None else quick
        return quick if self.quick else full

    def dsn(self, dbname: str, *, user: str = "postgres", password: str | None = None) -> str:
        cred = user if password is None else f"{user}:{password}"
        return f"postgresql://{cred}@127.0.0.1:{self.pg.port}/{dbname}"

    @contextlib.asynccontextmanager
    async def database(self, prefix: str) -> AsyncIterator[str]:
        """A fresh, migrated database for one benchmark, dropped afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:6]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.dsn(name))
        try:
            await migrate(conn)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", WORKER_LOGIN)
            if not exists:
                await conn.execute(
                    f"CREATE ROLE {WORKER_LOGIN} LOGIN PASSWORD "
                    f"'{WORKER_PASSWORD}' IN ROLE gpu_worker"
                )
        finally:
            await conn.close()
        try:
            yield self.dsn(name)
        finally:
            admin = await asyncpg.connect(self.admin_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    def worker_dsn(self, dsn: str) -> str:
        """The same database, logged in as a member of the least-privilege gpu_worker role."""
        dbname = dsn.rsplit("/", 1)[1]
        return self.dsn(dbname, user=WORKER_LOGIN, password=WORKER_PASSWORD)


# --- statistics ------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median with min and max over runs."""
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "samples": len(values),
    }


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def spread(stats: dict[str, Any], digits: int = 1) -> str:
    """'median (min–max)' of a summary()."""
    if stats.get("median") is None:
        return "-"
    return (
        f"{fmt(stats['median'], digits)} ({fmt(stats['min'], digits)}–{fmt(stats['max'], digits)})"
    )


def render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        f"| {' | '.join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True))} |",
        f"|{'|'.join('-' * (w + 2) for w in widths)}|",
    ]
    for row in cells[1:]:
        lines.append(f"| {' | '.join(c.ljust(w) for c, w in zip(row, widths, strict=True))} |")
    return f"### {title}\n\n" + "\n".join(lines) + "\n"


# --- bounded waiting ---------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.005,
    what: str = "condition",
) -> float:
    """Poll ``check`` until true; return when (perf_counter).

    Raise TimeoutError after ``timeout``."""
    deadline = time.perf_counter() + timeout
    while True:
        if await check():
            return time.perf_counter()
        if time.perf_counter() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


# --- the machine -------------------------------------------------------------------------


def find_pgbench(pg: EmbeddedPostgres | None = None) -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    if pg is not None and pg.bindir is not None and (pg.bindir / "pgbench").exists():
        return str(pg.bindir / "pgbench")
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True):
        return candidate
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


async def describe_machine(ctx: Context) -> dict[str, Any]:
    conn = await asyncpg.connect(ctx.admin_dsn)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
        settings = {
            r["name"]: r["setting"]
            for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1)",
                ["fsync", "synchronous_commit", "shared_buffers", "max_connections"],
            )
        }
    finally:
        await conn.close()
    pgbench = find_pgbench(ctx.pg)
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "postgres_version": pg_version,
        "postgres_source": ctx.pg.source,
        "postgres_settings": settings,
        "durable_commits": ctx.durable,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "pgbench": pgbench,
    }


def set_results_dir(path: Path) -> None:
    global RESULTS_DIR
    RESULTS_DIR = Path(path).resolve()


def results_dir() -> Path:
    return RESULTS_DIR


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# --- processes -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def require(module: str, what: str) -> None:
    """Raise NotRun unless ``module`` imports (another team's component may not be there)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise NotRun(f"{what} is not available ({module}: {exc})") from None


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``python -m worker`` as a pod would run it (its own session, output discarded)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        env={**os.environ, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )


async def stop_process(proc: Any, *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaped."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
