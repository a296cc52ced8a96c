"""Everything one fault scenario runs on: the fake Runpod whose pods are real worker
processes, reactors (in this process or as processes), the invariant checker, the ledger
and the task bookkeeping.

A scenario queues tasks with ``insert``, injects its faults, waits with ``wait_done`` and
``settle``, and ends with ``verify`` (the end-of-scenario invariants and its figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg

from reactor.engine.service import Reactor
from reactor.settings import Settings
from tests.fakes.runpod_v2 import FakePod, FakeRunpod
from tests.faults.invariants import (
    InvariantChecker,
    Ledger,
    check_tasks,
    duplicate_pods,
    figures_row,
    fleet_pods,
    fleet_problems,
)
from tests.faults.pods import PodProcesses
from tests.faults.processors import LEDGER_ENV
from tests.faults.reactors import ReactorProcess, ReactorProcs

GPU_A = "NVIDIA GeForce RTX 4090"  # 0.69 USD/h in the fake's price table
GPU_B = "NVIDIA RTX A6000"  # 0.49 USD/h
PROCESSORS = "fault=tests.faults.processors:record,poison=tests.faults.processors:crash"
STOP_LIMIT_SEC = 30.0
CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    TimeoutError,
)


def _task_stacks() -> str:
    """Where every task of this event loop is waiting, for a hang's diagnosis."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(limit=8, file=out)
    return out.getvalue()


class FaultRig:
    def __init__(
        self, *, name: str, db_dsn: str, worker_dsn: str, runpod: FakeRunpod, tmp_path: Path
    ) -> None:
        self.name = name
        self.db_dsn, self.worker_dsn = db_dsn, worker_dsn
        self.runpod = runpod
        self.ledger = Ledger(tmp_path / "ledger.txt")
        self.values: dict[str, Any] = self._defaults()
        self.checker = InvariantChecker(runpod, max_pods=3, max_spend=None)
        self.pods = PodProcesses(runpod, log_dir=tmp_path / "workers", on_created=self._created)
        self._on_next_create: list[Callable[[FakePod], None]] = []
        self.create_watchers: list[Callable[[FakePod], None]] = []  # called on every create
        self.reactors = ReactorProcs(tmp_path / "reactors")
        self.expected: set[str] = set()
        self.poison: set[str] = set()
        self.faults: Counter[str] = Counter()
        self.started = time.monotonic()
        self._conn: asyncpg.Connection | None = None
        self._reactor_tasks: list[asyncio.Task[None]] = []
        self.diagnostics = tmp_path / "describe.txt"

    def _created(self, pod: FakePod) -> None:
        self.checker.observe(f"create {pod.name}")
        for watch in self.create_watchers:
            watch(pod)
        hooks, self._on_next_create = self._on_next_create, []
        for hook in hooks:
            hook(pod)

    def on_next_create(self, hook: Callable[[FakePod], None]) -> None:
        """Run ``hook(pod)`` inside the next create, after the pod and its process exist
        and before the provider answers."""
        self._on_next_create.append(hook)

    # --- settings ------------------------------------------------------------------------
    def _defaults(self) -> dict[str, Any]:
        worker_env = {
            "HEARTBEAT_INTERVAL_SEC": "0.3",
            "POLL_INTERVAL_SEC": "0.3",
            "WORKER_GRACE_SEC": "2",
            "WORKER_CONNECT_RETRIES": "30",
            "WORKER_RECONNECT_MAX_SEC": "0.5",
            "WORKER_DB_TIMEOUT_SEC": "5",
            "WORKER_PROCESSORS": PROCESSORS,
            LEDGER_ENV: str(self.ledger.path),
            "LOG_FORMAT": "json",
        }
        return {
            "DATABASE_URL": self.db_dsn,
            "WORKER_DATABASE_URL": self.worker_dsn,
            "REACTOR_PROVIDER": "runpod",
            "RUNPOD_API_URL": self.runpod.url,
            "RUNPOD_API_KEY": self.runpod.api_key,
            "RUNPOD_GPU_TYPES": GPU_A,
            "RUNPOD_REQUEST_TIMEOUT_SEC": 5,
            "RUNPOD_CREATE_TIMEOUT_SEC": 5,
            "MIN_ACTIVE_GPUS": 0,
            "MAX_ACTIVE_GPUS": 3,
            "TASKS_PER_GPU_THRESHOLD": 2,
            "GPU_IDLE_TIMEOUT_SEC": 3,
            "SPAWNING_TIMEOUT_SEC": 10,
            "TASK_STUCK_TIMEOUT_SEC": 60,
            "GRACEFUL_SHUTDOWN_TIMEOUT_SEC": 10,
            "SCALE_DOWN_IDLE_SEC": 1,
            "SWEEP_INTERVAL_SEC": 2,
            "LISTENER_CHECK_INTERVAL_SEC": 1,
            "SPAWN_FAILURE_BACKOFF_SEC": 0.5,
            "REACTOR_HTTP_PORT": 0,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "WORKER_EXTRA_ENV": worker_env,
        }

    def configure(self, **values: Any) -> None:
        """Change reactor settings for every reactor started from now on."""
        self.values.update(values)
        self.checker.max_pods = int(self.values["MAX_ACTIVE_GPUS"])
        spend = self.values.get("MAX_HOURLY_SPEND_USD")
        self.checker.max_spend = float(spend) if spend is not None else None

    def settings(self, **overrides: Any) -> Settings:
        """Settings of an in-process reactor."""
        return Settings(_env_file=None, **{**self.values, **overrides})  # type: ignore[call-arg]

    def env(self, **overrides: Any) -> dict[str, str]:
        """The environment of a reactor process."""
        values = {**self.values, **overrides}
        return {
            k: json.dumps(v) if isinstance(v, dict) else str(v)
            for k, v in values.items()
            if v is not None
        }

    def start_reactor(self, **overrides: Any) -> ReactorProcess:
        return self.reactors.start(self.env(**overrides))

    # --- the database ----------------------------------------------------------------------
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a query, reconnecting once when the connection was lost (Postgres restarts)."""
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.db_dsn, timeout=5)
                return await self._conn.fetch(sql, *args)
            except CONNECTION_LOST:
                if self._conn is not None:
                    self._conn.terminate()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def connection(self) -> asyncpg.Connection:
        await self.fetch("SELECT 1")
        assert self._conn is not None
        return self._conn

    async def insert(
        self, count: int, *, kind: str = "fault", seconds: float = 0.2, max_attempts: int = 3
    ) -> list[str]:
        """Queue ``count`` tasks in one transaction; each task's params name its id."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        await self.fetch(
            "INSERT INTO tasks (id, task_type, params, max_attempts) "
            "SELECT k::uuid, $1, jsonb_build_object('key', k, 'seconds', $2::float8), $3 "
            "FROM unnest($4::text[]) AS k",
            kind,
            seconds,
            max_attempts,
            ids,
        )
        self.expected.update(ids)
        if kind == "poison":
            self.poison.update(ids)
        return ids

    async def task_counts(self) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT status::text AS status, count(*) AS n FROM tasks GROUP BY 1"
        )
        return {r["status"]: r["n"] for r in rows}

    # --- waiting ---------------------------------------------------------------------------
    async def until(self, check: Any, *, timeout: float, what: str, interval: float = 0.05) -> Any:
        """Poll ``check`` (sync or async) until truthy; transient database losses retry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
            except CONNECTION_LOST:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: timed out after {timeout}s waiting for {what}"
                    f"\n{await self.describe()}"
                )
            await asyncio.sleep(interval)

    async def wait_done(self, timeout: float = 60.0) -> None:
        async def done() -> bool:
            counts = await self.task_counts()
            return counts.get("Complete", 0) + counts.get("Failed", 0) >= len(self.expected)

        await self.until(done, timeout=timeout, what="every task to finish")

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every task is done and the fleet is consistent: then check that no
        pod lacks a live row and no live row lacks its pod."""
        await self.wait_done(timeout)

        async def consistent() -> bool:
            return not await fleet_problems(await self.connection(), self.runpod)

        await self.until(consistent, timeout=timeout, what="the fleet to settle")

    async def drain_to_zero(self, timeout: float = 30.0) -> None:
        """With MIN_ACTIVE_GPUS=0 an idle fleet scales to nothing: no pod, no live row,
        no worker process."""

        async def empty() -> bool:
            rows = await self.fetch(
                "SELECT 1 FROM workers WHERE status IN ('spawning', 'active', 'terminating')"
            )
            return not rows and not fleet_pods(self.runpod) and not self.pods.alive()

        await self.until(empty, timeout=timeout, what="the fleet to scale to zero")

    async def drain_by_operator(self) -> None:
        """Ask the reactor to drain every live worker (NOTIFY drain, as an operator would)."""
        rows = await self.fetch("SELECT id FROM workers WHERE status = 'active'")
        for row in rows:
            await self.fetch(
                "SELECT pg_notify('gpu_reactor', json_build_object("
                "'event', 'drain', 'worker_id', $1::text)::text)",
                row["id"],
            )

    @contextlib.asynccontextmanager
    async def running(self, settings: Settings | None = None) -> AsyncIterator[Reactor]:
        """A reactor in this event loop (leading, first reconcile done), like
        tests.engine.harness.running, but a stop that hangs fails the test instead of
        hanging the run: the task is cancelled, and abandoned if it cannot even be."""
        reactor = Reactor(settings or self.settings())
        task = asyncio.create_task(reactor.run(), name="reactor-under-test")
        reactor.task = task  # type: ignore[attr-defined]
        self._reactor_tasks.append(task)
        try:
            await self.until(
                lambda: (
                    task.done() or (reactor.state.role == "leader" and reactor.state.reconciles > 0)
                ),
                timeout=15,
                what="the reactor to lead",
            )
            if task.done():
                task.result()
            yield reactor
        finally:
            reactor.stop_event.set()
            await asyncio.wait({task}, timeout=STOP_LIMIT_SEC)
            if not task.done():
                stacks = _task_stacks()
                task.cancel()
                await asyncio.wait({task}, timeout=5)
                raise AssertionError(
                    f"the reactor did not stop within {STOP_LIMIT_SEC}s of "
                    f"its stop event (cancelled: {task.done()}):\n{stacks}"
                )
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def describe(self) -> str:
        lines = []
        try:
            lines.append(f"tasks: {await self.task_counts()}")
            rows = await self.fetch(
                "SELECT id, status, pod_id, error_reason FROM workers ORDER BY created_at"
            )
            lines += [
                f"worker row {r['id']}: {r['status']} pod={r['pod_id']} "
                f"{(r['error_reason'] or '')[:100]}"
                for r in rows
            ]
            lines += await fleet_problems(await self.connection(), self.runpod)
        except CONNECTION_LOST as exc:
            lines.append(f"(database unreachable: {exc})")
        lines.append(
            f"pods: {[(p.name, p.status_at(self.runpod.clock())) for p in fleet_pods(self.runpod)]}"
        )
        lines.append(f"worker processes alive: {[p.worker_id for p in self.pods.alive()]}")
        for proc in self.reactors.procs:
            lines.append(
                f"--- {proc.name} (alive={proc.alive}) log tail:\n{proc.log_text()[-1500:]}"
            )
        if any(not t.done() for t in self._reactor_tasks):
            lines.append(_task_stacks())
        text = "\n".join(lines)
        self.diagnostics.write_text(text)
        return text

    # --- the end ---------------------------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        """The end-of-scenario invariants; returns the scenario's figures."""
        self.checker.observe("end")
        self.checker.assert_held()
        assert not duplicate_pods(self.runpod), duplicate_pods(self.runpod)
        assert not self.runpod.hook_errors, self.runpod.hook_errors
        logs = [p.log_path for p in self.pods.procs.procs]
        tasks = await check_tasks(
            await self.connection(), self.expected, self.poison, self.ledger, logs
        )
        assert not tasks.problems, f"{self.name}:\n" + "\n".join(tasks.problems[:20])
        assert tasks.lost == 0 and tasks.duplicated == 0
        return figures_row(
            self.name, time.monotonic() - self.started, tasks, self.checker, self.faults
        )

    async def close(self) -> list[str]:
        """Stop whatever still runs; return what had been left running."""
        await self.checker.stop()
        leftovers = self.reactors.close()
        leftovers += await self.pods.close()
        if self._conn is not None:
            self._conn.terminate()
        return leftovers
