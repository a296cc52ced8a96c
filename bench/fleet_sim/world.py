"""The simulated world a policy acts on: tasks, pods and their workers, the provider, and
the bill, on simulated time (seconds from the start of the span).

A policy sees the world only as the reactor sees the database and the provider (the
counts, the live worker rows, the running tasks, the pods) and changes it only through
what the executor does (create a pod, drain a worker, retire it, requeue a task). The
world carries out the rest: pods start after a drawn start-up time, workers heartbeat,
claim claimable tasks the moment one is free, run them, and die at a rate.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.fleet_sim.workloads import TaskSpec
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC, ARRIVALS_COUNTED
from reactor.domain.model import Snapshot, TaskState, WorkerState, WorkerStatus
from reactor.domain.pods import FLEET_ENV, Pod

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
HEARTBEAT_SEC = 20.0  # the worker's heartbeat interval
FLEET = "sim"


def at(t: float) -> datetime:
    """Simulated seconds as the database clock."""
    return EPOCH + timedelta(seconds=t)


@dataclass(frozen=True)
class WorldConfig:
    startup_median: float = 90.0  # seconds from create to first heartbeat, median
    startup_sigma: float = 0.52  # lognormal: about 1 % beyond 5 min ...
    startup_max: float = 300.0  # ... where the tail is cut
    gpu_types: tuple[tuple[str, float], ...] = (("NVIDIA A40", 0.39), ("NVIDIA RTX A6000", 0.49))
    capacity_error_rate: float = 0.05  # per GPU type, per create: no capacity there
    deaths_per_pod_hour: float = 0.01  # a running pod dies (heartbeats stop, pod EXITED)
    max_active_gpus: int = 40
    max_hourly_spend_usd: float | None = None


@dataclass
class SimTask:
    spec: TaskSpec
    status: str = "Queued"  # Queued, In Progress, Complete
    worker: str | None = None
    ready_at: float | None = None  # when its dependencies were all complete
    started_at: float | None = None  # of the current attempt
    first_started_at: float | None = None
    attempts: int = 0
    run: int = 0  # bumped each attempt: a stale end event is ignored


@dataclass
class SimWorker:
    id: str
    created_at: float
    gpu_type: str
    price: float
    status: WorkerStatus = WorkerStatus.SPAWNING
    up_at: float = math.inf  # first heartbeat
    dies_at: float = math.inf
    activated_at: float | None = None
    draining_since: float | None = None
    last_task_finished_at: float | None = None
    task: int | None = None
    ended_at: float | None = None  # pod terminated: billing stops


class CapacityError(Exception):
    """No GPU type had capacity for this create."""


@dataclass
class Stats:
    lost: int = 0
    cap_exceeded: int = 0
    budget_exceeded: int = 0
    pods_created: int = 0
    capacity_errors: int = 0
    deaths: int = 0
    requeues: int = 0
    series: list[tuple[float, int, int]] = field(default_factory=list)  # t, live pods, queue


class World:
    def __init__(self, specs: list[TaskSpec], config: WorldConfig, seed: int) -> None:
        self.config = config
        self.rng = random.Random(f"world:{seed}")
        self.now = 0.0
        self.tasks = {s.id: SimTask(s) for s in specs}
        self.dependants: dict[int, list[int]] = {}
        for s in specs:
            for d in s.deps:
                self.dependants.setdefault(d, []).append(s.id)
        self.workers: dict[str, SimWorker] = {}
        self.live: dict[str, SimWorker] = {}  # rows spawning, active or terminating
        self.ended: list[SimWorker] = []
        self.ready: list[tuple[float, int]] = []  # claimable Queued tasks, by ready time
        self.queued = 0  # every Queued row, claimable or waiting for a dependency
        self.in_progress = 0
        self.done = 0
        self.stats = Stats()
        self._events: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.on_ring: Callable[[str], None] = lambda event: None  # the doorbell
        self.arrived: list[float] = []  # insert times so far, in order (query recent_arrivals)
        for s in specs:
            self.schedule(s.arrival, "arrive", s.id)

    # --- the event queue -----------------------------------------------------------------
    def schedule(self, t: float, kind: str, payload: object = None) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, payload))

    def next_event(self) -> tuple[float, str, object] | None:
        if not self._events:
            return None
        t, _, kind, payload = heapq.heappop(self._events)
        self.now = max(self.now, t)
        return t, kind, payload

    def handle(self, kind: str, payload: object) -> None:
        """The world's own events; a policy's are handled by the policy."""
        match kind:
            case "arrive":
                self._arrive(payload)  # type: ignore[arg-type]
            case "up":
                self._up(payload)  # type: ignore[arg-type]
            case "end":
                self._end(*payload)  # type: ignore[misc]
            case "die":
                self._die(payload)  # type: ignore[arg-type]
            case "sample":
                self.stats.series.append((self.now, len(self.live), self.queued))

    # --- tasks ---------------------------------------------------------------------------
    def _arrive(self, task_id: int) -> None:
        task = self.tasks[task_id]
        self.arrived.append(self.now)
        self.queued += 1
        if all(self.tasks[d].status == "Complete" for d in task.spec.deps):
            self._make_ready(task)
        self.on_ring("task_queued")
        self._dispatch()

    def _make_ready(self, task: SimTask) -> None:
        if task.ready_at is None:
            task.ready_at = self.now
        heapq.heappush(self.ready, (task.ready_at, task.spec.id))

    def _dispatch(self) -> None:
        """Free active workers claim claimable tasks at once (LISTEN wakes them)."""
        if not self.ready:
            return
        for worker in list(self.live.values()):
            if not self.ready:
                return
            if (
                worker.status == WorkerStatus.ACTIVE
                and worker.task is None
                and not self._gone(worker)
            ):
                _, task_id = heapq.heappop(self.ready)
                self._start(worker, self.tasks[task_id])

    def _gone(self, worker: SimWorker) -> bool:
        return worker.dies_at <= self.now

    def _start(self, worker: SimWorker, task: SimTask) -> None:
        task.status, task.worker, task.started_at = "In Progress", worker.id, self.now
        task.attempts += 1
        task.run += 1
        if task.first_started_at is None:
            task.first_started_at = self.now
        self.queued -= 1
        self.in_progress += 1
        worker.task = task.spec.id
        self.schedule(self.now + task.spec.duration, "end", (task.spec.id, task.run))

    def _end(self, task_id: int, run: int) -> None:
        task = self.tasks[task_id]
        if task.run != run or task.status != "In Progress":
            return  # requeued since, or its worker died
        worker = self.workers[task.worker or ""]
        if self._gone(worker) or worker.ended_at is not None:
            return
        task.status, task.worker = "Complete", None
        self.in_progress -= 1
        self.done += 1
        worker.task = None
        worker.last_task_finished_at = self.now
        for d in self.dependants.get(task_id, ()):
            dep = self.tasks[d]
            if dep.status == "Queued" and all(
                self.tasks[x].status == "Complete" for x in dep.spec.deps
            ):
                self._make_ready(dep)
        self.on_ring("task_finished")
        self._dispatch()

    def requeue(self, task_id: int) -> None:
        task = self.tasks[task_id]
        if task.status != "In Progress":
            return
        worker = self.workers.get(task.worker or "")
        if worker is not None and worker.task == task_id:
            worker.task = None
        task.status, task.worker, task.started_at = "Queued", None, None
        task.run += 1
        self.in_progress -= 1
        self.queued += 1
        self.stats.requeues += 1
        heapq.heappush(self.ready, (task.ready_at or self.now, task_id))
        self.on_ring("task_queued")
        self._dispatch()

    # --- pods and workers ----------------------------------------------------------------
    def create_pod(self) -> SimWorker:
        """Create a pod, trying each GPU type in order; CapacityError when none has room.
        The caps are checked here, after the fact: a policy that exceeds them is counted."""
        for gpu_type, price in self.config.gpu_types:
            if self.rng.random() < self.config.capacity_error_rate:
                continue
            worker = SimWorker(f"{FLEET}-w{next(self._ids)}", self.now, gpu_type, price)
            startup = self.rng.lognormvariate(
                math.log(self.config.startup_median), self.config.startup_sigma
            )
            worker.up_at = self.now + min(startup, self.config.startup_max)
            self.workers[worker.id] = worker
            self.live[worker.id] = worker
            self.stats.pods_created += 1
            self.schedule(worker.up_at, "up", worker.id)
            self._check_caps()
            return worker
        self.stats.capacity_errors += 1
        raise CapacityError("no GPU type had capacity")

    def _check_caps(self) -> None:
        if len(self.live) > self.config.max_active_gpus:
            self.stats.cap_exceeded += 1
        cap = self.config.max_hourly_spend_usd
        if cap is not None and sum(w.price for w in self.live.values()) > cap + 1e-9:
            self.stats.budget_exceeded += 1

    def _up(self, worker_id: str) -> None:
        worker = self.workers[worker_id]
        if worker.ended_at is not None or worker.status != WorkerStatus.SPAWNING:
            return
        worker.status, worker.activated_at = WorkerStatus.ACTIVE, self.now
        rate = self.config.deaths_per_pod_hour / 3600
        if rate > 0:
            worker.dies_at = self.now + self.rng.expovariate(rate)
            self.schedule(worker.dies_at, "die", worker_id)
        self.on_ring("worker_status")
        self._dispatch()

    def _die(self, worker_id: str) -> None:
        worker = self.workers[worker_id]
        if worker.ended_at is None:
            self.stats.deaths += 1  # heartbeats stop; its task stays In Progress, unfinished

    def drain(self, worker_id: str) -> None:
        worker = self.live.get(worker_id)
        if worker is not None and worker.status != WorkerStatus.TERMINATING:
            worker.status, worker.draining_since = WorkerStatus.TERMINATING, self.now
            self.on_ring("worker_status")

    def terminate(self, worker_id: str) -> None:
        """End a worker: its tasks back to the queue, its pod terminated (billing stops)."""
        worker = self.live.pop(worker_id, None)
        if worker is None:
            return
        if worker.task is not None:
            self.requeue(worker.task)
        worker.ended_at = self.now
        worker.status = WorkerStatus.TERMINATED
        self.ended.append(worker)

    def idle_since(self, worker: SimWorker) -> float:
        moments = [m for m in (worker.activated_at, worker.last_task_finished_at) if m]
        return max(moments) if moments else worker.created_at

    def last_heartbeat(self, worker: SimWorker) -> float | None:
        if worker.activated_at is None:
            return None
        until = min(self.now, worker.dies_at)
        beats = math.floor((until - worker.activated_at) / HEARTBEAT_SEC)
        return worker.activated_at + beats * HEARTBEAT_SEC

    # --- what the reactor reads ----------------------------------------------------------
    def snapshot(self, with_pods: bool) -> Snapshot:
        now = at(self.now)
        rows, running = [], []
        for w in self.live.values():
            beat = self.last_heartbeat(w)
            rows.append(
                WorkerState(
                    id=w.id,
                    status=w.status,
                    created_at=at(w.created_at),
                    pod_id=f"pod-{w.id}",
                    gpu_type=w.gpu_type,
                    cost_per_hr=w.price,
                    activated_at=at(w.activated_at) if w.activated_at is not None else None,
                    last_heartbeat=at(beat) if beat is not None else None,
                    draining_since=at(w.draining_since) if w.draining_since is not None else None,
                    last_task_finished_at=(
                        at(w.last_task_finished_at) if w.last_task_finished_at else None
                    ),
                )
            )
        for t in self.tasks.values():
            if t.status == "In Progress":
                running.append(TaskState(str(t.spec.id), t.worker, t.attempts, at(t.started_at)))
        pods = None
        if with_pods:
            pods = tuple(
                Pod(
                    id=f"pod-{w.id}",
                    name=w.id,
                    status="EXITED" if self._gone(w) else "RUNNING",
                    gpu_type=w.gpu_type,
                    cost_per_hr=w.price,
                    env={FLEET_ENV: FLEET},
                )
                for w in self.live.values()
            )
        oldest = min((t for t, _ in self.ready), default=None)
        arrivals, since = self.recent_arrivals()
        return Snapshot(
            now=now,
            queued=self.queued,
            in_progress=self.in_progress,
            workers=tuple(rows),
            running=tuple(running),
            oldest_queued_at=at(oldest) if oldest is not None else None,
            pods=pods,
            # Queued tasks a dependency holds back (queue_counts' blocked_waiting): not demand.
            blocked_waiting=self.queued - len(self.ready),
            arrivals=arrivals,
            arrivals_since=at(since) if since is not None else None,
        )

    def recent_arrivals(self) -> tuple[int, float | None]:
        """As the query recent_arrivals: tasks inserted in the window before now, and the
        oldest (the query reads at most ARRIVALS_COUNTED rows touched in the window: a
        simulated hour never comes near it)."""
        first = bisect.bisect_right(self.arrived, self.now - ARRIVAL_WINDOW_SEC)
        count = min(len(self.arrived) - first, ARRIVALS_COUNTED)
        return count, (self.arrived[first] if count else None)

    # --- the bill and the figures --------------------------------------------------------
    def finish(self, end: float) -> None:
        """Stop the clock at ``end``: pods still up are billed to it; unfinished work is
        counted as lost only if it was never going to run (the span drains first)."""
        self.now = end
        for w in list(self.live.values()):
            self.terminate(w.id)
        self.stats.lost = sum(1 for t in self.tasks.values() if t.status != "Complete")

    def billed(self) -> tuple[float, float, float, float]:
        """GPU-seconds billed, USD, GPU-seconds of completed tasks, GPU-seconds starting."""
        seconds = usd = starting = 0.0
        for w in self.ended:
            end = w.ended_at if w.ended_at is not None else self.now
            seconds += end - w.created_at
            usd += (end - w.created_at) * w.price / 3600
            starting += min(w.up_at, end) - w.created_at
        busy = sum(t.spec.duration for t in self.tasks.values() if t.status == "Complete")
        return seconds, usd, busy, starting
