"""One run of `gpu-reactor demo` (``Demo``): the whole system on this machine, with nothing
to sign up for.

A fresh database in an embedded PostgreSQL (or ``--database-url``; reactor/demo/database.py);
the real Reactor in this process with the ``local`` provider, whose pods are
``python -m worker`` processes started with the environment a pod gets, in two GPU pools
(a POOLS_FILE in the data directory, reactor/demo/config.py); a workload of bursts of
video and image tasks with one worker killed mid-task (reactor/demo/workload.py); the live
dashboard or plain lines (reactor/demo/display.py); /status and /metrics on localhost; a
closing summary (reactor/demo/report.py). However the run ends - its duration, Ctrl-C,
SIGTERM, an error - one finally-path stops the reactor, every worker and Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import IO, Any

import asyncpg
import orjson

from reactor.aio import wait_event
from reactor.db.embedded import free_port
from reactor.demo.config import (
    DEFAULT_PORT,
    DEMO_FLEET,
    DEMO_POOLS,
    DEMO_SETTINGS,
    FINISH_GRACE_SEC,
    POOLS_TOML,
    STOPPED_REASON,
    DemoSettings,
)
from reactor.demo.database import DemoDatabase
from reactor.demo.display import Display, LiveDisplay, print_intro
from reactor.demo.report import build_summary, histogram_buckets, read_run, render
from reactor.demo.workload import Workload, pid_of, plan, process_alive
from reactor.domain.model import WorkerStatus
from reactor.errors import ConfigError
from reactor.logs import TextFormatter, register_secrets
from reactor.ops.tables import make_console
from reactor.settings import Settings

log = logging.getLogger("reactor.demo.command")

OPEN_TASKS = """
SELECT count(*) FROM tasks
WHERE params ->> 'demo_run' = $1 AND status IN ('Queued', 'In Progress')
"""
LIVE_DEMO_WORKERS = """
SELECT id FROM workers WHERE status IN ('spawning', 'active', 'terminating') AND id LIKE $1 || '-%'
"""
TASK = "SELECT status::text AS status, attempts, worker_id FROM tasks WHERE id = $1::uuid"


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.plan = plan(
            args.tasks,
            args.duration,
            full_fleet=DEMO_SETTINGS["MAX_ACTIVE_GPUS"] * DEMO_SETTINGS["TASKS_PER_GPU_THRESHOLD"],
        )
        self.run_id = secrets.token_hex(6)
        self.stop = asyncio.Event()
        self.signal: int | None = None
        self.console = make_console()
        self.db: DemoDatabase | None = None
        self.settings: Settings | None = None
        self.pool: asyncpg.Pool | None = None
        self.http: Any = None
        self.reactor: Any = None
        self.reactor_task: asyncio.Task[int] | None = None
        self.display: Display | None = None
        self.workload: Workload | None = None
        self.started_at: Any = None
        self.failure: str | None = None
        self.summary: dict[str, Any] | None = None
        self._lock: IO[str] | None = None

    # --- the whole run -----------------------------------------------------------------------
    async def run(self) -> int:
        self._install_signals()
        try:
            await self._start()
            if not self.stop.is_set():
                await self._play()
        finally:
            await self._shutdown()
        if self.summary is not None:
            self.console.print()
            self.console.print(render(self.summary), highlight=False)
            if self.args.json_summary:
                body = orjson.dumps(self.summary, option=orjson.OPT_INDENT_2, default=str)
                await asyncio.to_thread(Path(self.args.json_summary).write_bytes, body)
                self.console.print(f"summary written to {self.args.json_summary}")
        if self.failure:
            self.console.print(f"gpu-reactor demo: {self.failure}", style="bold red")
        return self._exit_code()

    def _exit_code(self) -> int:
        left = self.summary and self.summary["processes"]["left_running"]
        if self.failure or left:
            return 1
        if self.signal is not None:
            return 128 + self.signal  # 130 after Ctrl-C, 143 after SIGTERM
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self.signal is None:
            self.signal = sig
            self.console.print(
                f"{signal.Signals(sig).name}: stopping the reactor, the workers and Postgres",
                style="bold yellow",
            )
        else:
            self.console.print(
                "still stopping: waiting for the workers and Postgres to exit", style="yellow"
            )
        self.stop.set()

    # --- start ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self.db = DemoDatabase(self.data_dir, self.args.database_url)
        if self.db.pg is not None:
            self.console.print(f"starting PostgreSQL in {self.db.pg.datadir} ...")
        await self.db.open()
        port = self._port()
        pools_file = self.data_dir / "pools.toml"
        pools_file.write_text(POOLS_TOML, encoding="utf-8")
        self.settings = DemoSettings(
            **{
                **DEMO_SETTINGS,
                "POOLS_FILE": str(pools_file),
                "DATABASE_URL": self.db.dsn,
                "WORKER_DATABASE_URL": self.db.worker_dsn,
                "REACTOR_HTTP_HOST": "127.0.0.1",
                "REACTOR_HTTP_PORT": port,
            }
        )
        register_secrets(self.settings.secrets())
        self.pool = await asyncpg.create_pool(
            self.db.dsn,
            min_size=1,
            max_size=4,
            server_settings={"application_name": "gpu-reactor-demo"},
        )
        self.started_at = await self.pool.fetchval("SELECT clock_timestamp()")
        self._make_reactor()
        from reactor.http.server import start_http

        self.http = await start_http(self.reactor)
        print_intro(
            self.console,
            where=self.db.where,
            plan=self.plan,
            duration=self.args.duration,
            port=port,
            data_dir=self.data_dir,
            settings=DEMO_SETTINGS,
            pools=self.reactor.pools,
        )

    def _take_lock(self) -> None:
        self._lock = (self.data_dir / "demo.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"another demo is running with the data directory {self.data_dir} (use --data-dir)"
            ) from None

    def _port(self) -> int:
        if self.args.port:
            return int(self.args.port)
        if self.args.port is None and _port_is_free(DEFAULT_PORT):
            return DEFAULT_PORT
        return free_port()

    def _make_reactor(self) -> None:
        from reactor.engine.metrics import Metrics
        from reactor.engine.service import Reactor
        from reactor.providers import make_provider

        assert self.settings is not None
        logs = self.data_dir / "worker-logs"
        shutil.rmtree(logs, ignore_errors=True)
        metrics = Metrics()
        provider = make_provider(self.settings, on_request=metrics.provider_request, workdir=logs)
        self.reactor = Reactor(self.settings, provider=provider, metrics=metrics)

    # --- play ----------------------------------------------------------------------------------
    async def _play(self) -> None:
        assert self.pool is not None and self.settings is not None
        port = self.settings.reactor_http_port
        urls = f"http://127.0.0.1:{port}/ (web console), /status"
        live = not self.args.no_dashboard and sys.stdout.isatty()
        kind = LiveDisplay if live else Display
        self.display = kind(
            reactor=self.reactor,
            pool=self.pool,
            run_id=self.run_id,
            duration=self.args.duration,
            urls=urls,
            console=self.console,
            log_level=logging.INFO if live else logging.DEBUG,
        )
        if live:
            _log_to_file(self.data_dir / "demo.log")
            self.console.print(f"  logs       {self.data_dir / 'demo.log'}")
        self.workload = Workload(
            pool=self.pool,
            reactor=self.reactor,
            plan=self.plan,
            run_id=self.run_id,
            stop=self.stop,
            narrate=self.display.narrate,
        )
        self.reactor_task = asyncio.create_task(self.reactor.serve(), name="demo-reactor")
        others = [
            asyncio.create_task(self.display.run(), name="demo-display"),
            asyncio.create_task(self._story(), name="demo-story"),
        ]
        stopped = asyncio.create_task(self.stop.wait(), name="demo-stop")
        try:
            done, _ = await asyncio.wait(
                [self.reactor_task, stopped, *others], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopped and not task.cancelled():
                    self._check(task)
        finally:
            self.stop.set()
            for task in [*others, stopped]:
                task.cancel()
            await asyncio.gather(*others, stopped, return_exceptions=True)

    def _check(self, task: asyncio.Task[Any]) -> None:
        """A supervised task ended first: only the story may end without failing the demo."""
        exc = task.exception()
        if exc is not None:
            self.failure = f"{task.get_name()} failed: {type(exc).__name__}: {exc}"
            log.error("demo_task_failed", extra={"task": task.get_name()}, exc_info=exc)
        elif task is self.reactor_task:
            self.failure = "the reactor stopped on its own"

    async def _story(self) -> None:
        """The workload, then the rest of --duration; past it, wait for open tasks."""
        assert self.workload is not None and self.display is not None
        await self.workload.run()
        end = time.monotonic() + self.args.duration - self.display.elapsed()
        if await wait_event(self.stop, end - time.monotonic()):
            return
        while await self._open_tasks() and time.monotonic() < end + FINISH_GRACE_SEC:
            if await wait_event(self.stop, 0.5):
                return
        self.display.narrate(
            "demo_over", "the run is over: stopping the reactor, the workers and Postgres", {}
        )

    async def _open_tasks(self) -> int:
        assert self.pool is not None
        return int(await self.pool.fetchval(OPEN_TASKS, self.run_id))

    # --- stop (always runs) --------------------------------------------------------------------
    async def _shutdown(self) -> None:
        await _step("stop the reactor", self._stop_reactor())
        if self.reactor is not None:  # Reactor.close() did this already unless it never ran
            await _step("close the provider", self.reactor.provider.close())
        if self.pool is not None:
            await _step("record the workers the demo stopped", self._retire_stopped())
            if self.workload is not None:
                await _step("collect the summary", self._collect())
            await _step("close the pool", self.pool.close())
        if self.http is not None:
            await _step("stop HTTP", self.http.cleanup())
        if self.db is not None:
            await _step("stop PostgreSQL", self.db.stop())
        if self.summary is not None:
            started = self.summary["processes"]["started"]
            self.summary["processes"]["left_running"] = [p for p in started if _alive(p)]
        if self._lock is not None:
            self._lock.close()

    async def _stop_reactor(self) -> None:
        if self.reactor_task is None:
            return
        self.reactor.stop_event.set()  # Reactor.serve climbs its shutdown ladder
        try:
            if await self.reactor_task:
                self.failure = self.failure or "the reactor did not stop (its stacks are logged)"
        except Exception:  # noted by _check; the shutdown goes on
            pass

    async def _retire_stopped(self) -> None:
        """Rows of workers still live: their processes ended with the demo; say so."""
        from reactor.db.queries import query

        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(LIVE_DEMO_WORKERS, DEMO_FLEET)]
            for worker_id in ids:
                await conn.execute(
                    query("retire_worker"), worker_id, WorkerStatus.TERMINATED, STOPPED_REASON
                )
            if ids:
                await conn.fetch(query("reset_orphaned_tasks"), ids)

    async def _collect(self) -> None:
        assert self.pool is not None and self.workload is not None and self.db is not None
        record = self.workload.record
        async with self.pool.acquire() as conn:
            tasks, workers, ran = await read_run(conn, self.run_id, DEMO_FLEET, self.started_at)
            killed = None
            if record.kill is not None:
                row = await conn.fetchrow(TASK, record.kill.task_id)
                killed = dict(row) if row is not None else None
            ended_at = await conn.fetchval("SELECT clock_timestamp()")
        started = [
            {"kind": "worker", "id": w["id"], "pid": pid_of(w["pod_id"])}
            for w in workers
            if pid_of(w["pod_id"]) is not None
        ]
        if self.db.pg is not None and self.db.pg_pid is not None:
            started.append(
                {"kind": "postgres", "id": str(self.db.pg.datadir), "pid": self.db.pg_pid}
            )
        self.summary = build_summary(
            record=record,
            tasks=tasks,
            workers=workers,
            ran=ran,
            killed_task=killed,
            reaction_buckets=histogram_buckets(self.reactor.metrics.reaction_latency),
            settings=DEMO_SETTINGS,
            pools=DEMO_POOLS,
            started_at=self.started_at,
            ended_at=ended_at,
            processes={"started": started, "left_running": []},
        )
        self.summary["database"] = str(self.db.pg.datadir) if self.db.pg else "--database-url"


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(process: dict[str, Any]) -> bool:
    marker = f"WORKER_ID={process['id']}\0".encode() if process["kind"] == "worker" else None
    return process_alive(process["pid"], marker)


async def _step(what: str, action: Awaitable[Any]) -> None:
    """One shutdown step: a failure is logged and the next step still runs."""
    try:
        await action
    except Exception as exc:
        log.error("demo_shutdown_step_failed", extra={"step": what, "error": str(exc)[:300]})


def _log_to_file(path: Path) -> None:
    """While the dashboard owns the terminal, log lines go to a file."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
