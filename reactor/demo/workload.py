"""The demo's workload: bursts of tasks for two GPU pools, then one worker killed mid-task.

``plan`` is pure (task counts and durations from --tasks, --duration and a seed);
``Workload.run`` carries it out against the database, in two acts:

1. bursts of tasks over the first third of the run, one in VIDEO_EVERY a ``video`` task
   (pool ``big``), the others ``image`` tasks (pool ``small``); each is a sleep of 1-3 s.
   Each pool scales up to its own max, works its tasks down and, once idle for
   SCALE_DOWN_IDLE_SEC, drains back to MIN_ACTIVE_GPUS;
2. a small burst of image tasks on the idle fleet; the worker that takes it is killed with
   SIGKILL in the middle of a task. Its heartbeat stops, the reactor's heartbeat deadline marks it
   'error', requeues the task and spawns a replacement, which completes it.

Every task carries ``demo_run`` in its params, so the summary counts this run's tasks only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson

from reactor.aio import wait_event
from reactor.demo.config import IMAGE, VIDEO
from reactor.domain.events import CHANNEL
from reactor.engine.service import Reactor

log = logging.getLogger(__name__)

BURST_SPACING_SEC = 20.0  # between two bursts of act one: long enough to drain in between
BURSTS_SHARE = 0.5  # act one's bursts arrive within this share of --duration
ACT_TWO_TASKS = 3
VIDEO_EVERY = 4  # one task in this many is a video task
POLL_SEC = 0.25
ACT_PAUSE_SEC = 2.0  # the fleet rests at MIN for a moment before act two
SWEEP_WAIT_SEC = 5.0

# The demo's own statements (the reactor's queries live in sql/queries.sql).
INSERT_TASKS = """
WITH queued AS (
    INSERT INTO tasks (task_type, params)
    SELECT k, jsonb_build_object('seconds', s, 'demo_run', $3::text)
    FROM unnest($1::text[], $2::float8[]) AS u (k, s)
    RETURNING 1
)
SELECT count(*) AS queued, clock_timestamp() AS at FROM queued
"""
RUN_PROGRESS = """
SELECT count(*) FILTER (WHERE status IN ('Queued', 'In Progress')) AS open,
       count(*) FILTER (WHERE status = 'Complete') AS complete
FROM tasks WHERE params ->> 'demo_run' = $1
"""
LIVE_WORKERS = "SELECT count(*) FROM workers WHERE status IN ('spawning', 'active', 'terminating')"
BUSY_WORKER = """
SELECT t.id::text AS task_id, t.worker_id, w.pod_id, t.attempts
FROM tasks t JOIN workers w ON w.id = t.worker_id
WHERE t.status = 'In Progress' AND w.status = 'active' AND t.params ->> 'demo_run' = $1
ORDER BY t.generation_started_at DESC
LIMIT 1
"""
WORKER_END = "SELECT status, error_reason, terminated_at FROM workers WHERE id = $1"
SPAWNED_AFTER = """
SELECT id, created_at FROM workers WHERE created_at > $1 AND id <> $2 ORDER BY created_at LIMIT 1
"""
DB_CLOCK = "SELECT clock_timestamp()"

T = TypeVar("T")


@dataclass(frozen=True)
class Burst:
    at: float  # seconds after the workload starts
    seconds: tuple[float, ...]  # one task per entry: how long it sleeps
    types: tuple[str, ...]  # and its task type


@dataclass(frozen=True)
class Plan:
    bursts: tuple[Burst, ...]
    act_two: tuple[float, ...]  # image tasks

    @property
    def tasks(self) -> int:
        return sum(len(b.seconds) for b in self.bursts) + len(self.act_two)


def plan(tasks: int, duration: float, full_fleet: int, seed: int = 4090) -> Plan:
    """Split ``tasks`` into act one's bursts and act two's small burst.

    :param full_fleet: tasks that call for every worker (MAX_ACTIVE_GPUS x
        TASKS_PER_GPU_THRESHOLD); bursts are at least that big while tasks allow.
    """
    if tasks < ACT_TWO_TASKS + 1:
        raise ValueError(f"the demo needs at least {ACT_TWO_TASKS + 1} tasks")
    rng = random.Random(seed)
    main = tasks - ACT_TWO_TASKS
    count = 1 + int(duration * BURSTS_SHARE // BURST_SPACING_SEC)
    count = max(1, min(count, main // max(full_fleet, 1)))
    sizes = [main // count] * count
    sizes[0] += main - sum(sizes)
    bursts = tuple(
        Burst(
            i * BURST_SPACING_SEC,
            tuple(round(rng.uniform(1.0, 3.0), 1) for _ in range(size)),
            tuple(VIDEO if n % VIDEO_EVERY == 0 else IMAGE for n in range(size)),
        )
        for i, size in enumerate(sizes)
    )
    # Act two's tasks are long enough that the kill lands in the middle of one.
    act_two = tuple(round(rng.uniform(2.5, 3.0), 1) for _ in range(ACT_TWO_TASKS))
    return Plan(bursts, act_two)


@dataclass
class QueuedBurst:
    label: str
    tasks: int
    at: datetime  # database clock, just before the insert commits


@dataclass
class Kill:
    worker_id: str
    pid: int
    task_id: str
    attempt: int
    at: datetime  # database clock
    detected_at: datetime | None = None
    status: str | None = None
    reason: str | None = None
    replacement: str | None = None
    replacement_at: datetime | None = None


@dataclass
class WorkloadRecord:
    """What the workload did, for the summary."""

    run_id: str
    bursts: list[QueuedBurst] = field(default_factory=list)
    kill: Kill | None = None
    kill_skipped: str | None = None
    notes: list[str] = field(default_factory=list)


Narrate = Callable[[str, str, dict[str, Any]], None]


def pid_of(pod_id: str | None) -> int | None:
    """The local provider's pod ids are ``local-<pid>``."""
    if pod_id and pod_id.startswith("local-") and pod_id[6:].isdigit():
        return int(pod_id[6:])
    return None


def process_alive(pid: int, marker: bytes | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie); with ``marker``, only if its environment holds it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        if marker is not None:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return marker in f.read()
        return True
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS) or not ours to read: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Workload:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        reactor: Reactor,
        plan: Plan,
        run_id: str,
        stop: asyncio.Event,
        narrate: Narrate,
    ) -> None:
        self.pool = pool
        self.reactor = reactor
        self.settings = reactor.settings
        self.plan = plan
        self.stop = stop
        self.narrate = narrate
        self.record = WorkloadRecord(run_id=run_id)

    async def run(self) -> WorkloadRecord:
        if await self._until(self._reactor_leads, 60, "the reactor to lead") is None:
            return self.record
        started = time.monotonic()
        for i, burst in enumerate(self.plan.bursts, 1):
            if await wait_event(self.stop, started + burst.at - time.monotonic()):
                return self.record
            await self._queue(f"burst {i}/{len(self.plan.bursts)}", burst.types, burst.seconds)
        if await self._until(self._queue_done, 300, "act one's queue to empty") is None:
            return self.record
        self.narrate(
            "demo_queue_done",
            "act one done: every task complete; the fleet idles "
            f"{self.settings.scale_down_idle_sec:g}s, then drains to MIN",
            {},
        )
        if await self._until(self._fleet_at_min, 120, "the fleet to drain to MIN") is None:
            return self.record
        self.narrate(
            "demo_fleet_at_min",
            f"fleet back at MIN_ACTIVE_GPUS={self.settings.min_active_gpus}",
            {},
        )
        if not await wait_event(self.stop, ACT_PAUSE_SEC):
            await self._act_two()
        return self.record

    # --- act two ---------------------------------------------------------------------------
    async def _act_two(self) -> None:
        await self._queue("act two", (IMAGE,) * len(self.plan.act_two), self.plan.act_two)
        busy = await self._until(
            self._busy, self.settings.spawning_timeout_sec + 20, "a worker to take act two's task"
        )
        if busy is None:
            return
        kill = await self._kill_busy_worker()
        if kill is None:
            return
        self.record.kill = kill
        ended = await self._until(
            lambda: self._ended(kill.worker_id),
            self.settings.gpu_idle_timeout_sec + self.settings.sweep_interval_sec + 30,
            "the reactor to notice the dead worker",
        )
        if ended is None:
            return
        kill.status, kill.reason, kill.detected_at = ended
        self.narrate(
            "demo_kill_detected",
            f"detected after {(kill.detected_at - kill.at).total_seconds():.1f}s: "
            f"{kill.worker_id} is '{kill.status}' ({kill.reason}); its task is requeued",
            {"worker_id": kill.worker_id, "status": kill.status, "reason": kill.reason},
        )
        spawned = await self._until(lambda: self._spawned_after(kill), 60, "a replacement")
        if spawned is not None:
            kill.replacement, kill.replacement_at = spawned
            self.narrate(
                "demo_replacement",
                f"replacement {kill.replacement} spawned "
                f"{(kill.replacement_at - kill.at).total_seconds():.1f}s after the kill",
                {"worker_id": kill.replacement},
            )

    async def _kill_busy_worker(self) -> Kill | None:
        """SIGKILL the worker of an In Progress task, right after a sweep.

        The local provider reports a dead process as an EXITED pod, so a sweep would also
        notice it; forcing one first leaves SWEEP_INTERVAL_SEC before the next, and the
        heartbeat deadline (GPU_IDLE_TIMEOUT_SEC) is what catches the death - as it is for a
        hung worker or a pod cut off from the network."""
        for _ in range(5):
            await self._force_sweep()
            busy = await self._busy()
            pid = pid_of(busy["pod_id"]) if busy else None
            if busy is None or pid is None:
                if busy is not None:
                    self.record.kill_skipped = f"pod id {busy['pod_id']!r} is not a local process"
                    return None
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            at = await self.pool.fetchval(DB_CLOCK)
            self.narrate(
                "demo_worker_killed",
                f"killed {busy['worker_id']} (pid {pid}) with SIGKILL in the middle of "
                f"task {busy['task_id'][:8]}; nobody tells the reactor",
                {"worker_id": busy["worker_id"], "pid": pid, "task_id": busy["task_id"]},
            )
            return Kill(busy["worker_id"], pid, busy["task_id"], busy["attempts"], at)
        self.record.kill_skipped = "no worker was busy right after a sweep"
        return None

    async def _force_sweep(self) -> None:
        before = self.reactor.state.last_sweep_at
        await self.pool.execute(
            "SELECT pg_notify($1, $2)", CHANNEL, orjson.dumps({"event": "sweep"}).decode()
        )
        deadline = time.monotonic() + SWEEP_WAIT_SEC
        while self.reactor.state.last_sweep_at == before and time.monotonic() < deadline:
            if await wait_event(self.stop, 0.01):
                return

    # --- steps and conditions --------------------------------------------------------------
    async def _queue(self, label: str, types: tuple[str, ...], seconds: tuple[float, ...]) -> None:
        row = await self.pool.fetchrow(INSERT_TASKS, list(types), list(seconds), self.record.run_id)
        self.record.bursts.append(QueuedBurst(label, row["queued"], row["at"]))
        kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(types).most_common())
        self.narrate(
            "demo_tasks_queued",
            f"{label}: {row['queued']} tasks queued ({kinds}; {min(seconds):g}-"
            f"{max(seconds):g}s each)",
            {"burst": label, "tasks": row["queued"]},
        )

    async def _until(
        self, check: Callable[[], Awaitable[T | None]], timeout: float, what: str
    ) -> T | None:
        """Poll ``check`` until it returns a value; None when stopped or timed out."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            value = await check()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                note = f"gave up waiting for {what} after {timeout:g}s"
                self.record.notes.append(note)
                self.narrate("demo_wait_timeout", note, {})
                return None
            await wait_event(self.stop, POLL_SEC)
        return None

    async def _reactor_leads(self) -> bool | None:
        state = self.reactor.state
        return True if state.role == "leader" and state.reconciles > 0 else None

    async def _queue_done(self) -> bool | None:
        row = await self.pool.fetchrow(RUN_PROGRESS, self.record.run_id)
        return True if row["open"] == 0 else None

    async def _fleet_at_min(self) -> bool | None:
        live = await self.pool.fetchval(LIVE_WORKERS)
        return True if live <= self.settings.min_active_gpus else None

    async def _busy(self) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(BUSY_WORKER, self.record.run_id)
        return dict(row) if row is not None else None

    async def _ended(self, worker_id: str) -> tuple[str, str, datetime] | None:
        row = await self.pool.fetchrow(WORKER_END, worker_id)
        if row is None or row["terminated_at"] is None:
            return None
        return row["status"], row["error_reason"] or "", row["terminated_at"]

    async def _spawned_after(self, kill: Kill) -> tuple[str, datetime] | None:
        row = await self.pool.fetchrow(SPAWNED_AFTER, kill.at, kill.worker_id)
        return (row["id"], row["created_at"]) if row is not None else None
