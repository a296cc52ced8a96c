"""The other policies, as models: the seed orchestrator's rule, a KEDA-style rule, and
the lower bound no policy can beat. Each is our own reading of the rule, written for
the simulator; none of the seed's code is here.

Both polling rules see the world as a poll of the database does, every POLL_SEC, and act
at once (terminate immediately, as the seed does: an idle worker has nothing to drain).
"""

from __future__ import annotations

import contextlib
import heapq
import math
from dataclasses import dataclass

from bench.fleet_sim.world import CapacityError, SimWorker, World
from reactor.domain.model import WorkerStatus

POLL_SEC = 30.0


@dataclass(frozen=True)
class SeedRule:
    """peteromallet/Headless-Wan2GP-Orchestrator, gpu_orchestrator/control_loop.py, as
    read: each 30 s cycle,

    - workload = Queued + In Progress; task_based = max(1, ceil(workload x
      SCALE_UP_MULTIPLIER)) when there is work, else 0; buffer = busy workers +
      MACHINES_TO_KEEP_IDLE; desired = min(max(MIN, task_based, buffer), MAX);
    - early termination of spawning workers past SPAWNING_GRACE_PERIOD_SEC when capacity
      exceeds ceil(workload x SCALE_DOWN_MULTIPLIER), no task is queued, and
      SCALE_DOWN_GRACE_PERIOD_SEC has passed since the last such scale-down;
    - over desired: idle workers (no task, last completion or creation older than the
      idle timeout: GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC while over capacity, else
      GPU_IDLE_TIMEOUT_SEC), newest first, at most min(idle - MACHINES_TO_KEEP_IDLE,
      total - desired, active - MIN) are terminated;
    - under desired: spawn desired - (active + spawning), within MAX;
    - a worker whose heartbeat is older than GPU_IDLE_TIMEOUT_SEC is terminated and its
      task requeued.

    MIN_SCALING_INTERVAL_SEC is read by the seed but used nowhere in its loop; it is not
    modelled. Its defaults are MIN=2 and MAX=10; the simulator gives every policy the same
    MIN and MAX instead.
    """

    min_active: int = 0
    max_active: int = 40
    scale_up_multiplier: float = 1.0
    scale_down_multiplier: float = 0.9
    keep_idle: int = 0
    idle_timeout: float = 600.0
    overcapacity_idle_timeout: float = 30.0
    spawning_grace: float = 180.0
    scale_down_grace: float = 60.0
    name: str = "seed rule"


class SeedPolicy:
    def __init__(self, world: World, rule: SeedRule) -> None:
        self.world, self.rule = world, rule
        self.last_down: float | None = None
        world.schedule(0.0, "poll")

    def handle(self, payload: object) -> None:
        self.cycle()
        self.world.schedule(self.world.now + POLL_SEC, "poll")

    def _idle_for(self, w: SimWorker) -> float:
        last = w.last_task_finished_at if w.last_task_finished_at is not None else w.created_at
        return self.world.now - last

    def cycle(self) -> None:
        world, r, now = self.world, self.rule, self.world.now
        for w in list(world.live.values()):  # stale heartbeats
            beat = world.last_heartbeat(w)
            if beat is not None and now - beat > r.idle_timeout:
                world.terminate(w.id)
        workload = world.queued + world.in_progress
        live = list(world.live.values())
        spawning = [w for w in live if w.status == WorkerStatus.SPAWNING]
        active = [w for w in live if w.status == WorkerStatus.ACTIVE]
        early = max(
            r.min_active,
            max(1, math.ceil(workload * r.scale_down_multiplier)) if workload else 0,
            r.keep_idle,
        )
        early = min(early, r.max_active)
        down_ok = self.last_down is None or now - self.last_down >= r.scale_down_grace
        if len(live) > early and world.queued == 0 and down_ok:
            old = [w for w in spawning if now - w.created_at > r.spawning_grace]
            for w in old[: len(live) - early]:
                world.terminate(w.id)
                self.last_down = now
        live = list(world.live.values())
        active = [w for w in live if w.status == WorkerStatus.ACTIVE]
        idle = [w for w in active if w.task is None]
        busy = len(active) - len(idle)
        task_based = max(1, math.ceil(workload * r.scale_up_multiplier)) if workload else 0
        desired = min(max(r.min_active, task_based, busy + r.keep_idle), r.max_active)
        total = len(live)
        if total > desired:
            timeout = r.overcapacity_idle_timeout
            victims = sorted(
                (w for w in idle if self._idle_for(w) > timeout),
                key=lambda w: w.created_at,
                reverse=True,
            )
            count = min(
                len(victims),
                max(0, len(idle) - r.keep_idle),
                total - desired,
                max(0, len(active) - r.min_active),
            )
            for w in victims[:count]:
                world.terminate(w.id)
        live_count = len(world.live)
        for _ in range(min(desired - live_count, r.max_active - live_count)):
            with contextlib.suppress(CapacityError):  # tried again at the next poll
                world.create_pod()


@dataclass(frozen=True)
class KedaRule:
    """A KEDA ScaledObject on a PostgreSQL trigger: every 30 s, desired =
    ceil(Queued + In Progress / threshold) within MIN..MAX; up at once, down only to the
    highest desired of the last 300 s (the cooldown / stabilisation window). Scale-down
    removes idle pods first; a busy one is drained (it finishes its task and exits, as a
    terminationGracePeriod long enough would let it). A pod is restarted when its
    liveness probe (heartbeat) fails for 60 s."""

    threshold: int = 1
    cooldown: float = 300.0
    min_active: int = 0
    max_active: int = 40
    liveness: float = 60.0
    name: str = "KEDA"


class KedaPolicy:
    def __init__(self, world: World, rule: KedaRule) -> None:
        self.world, self.rule = world, rule
        self.history: list[tuple[float, int]] = []
        world.schedule(0.0, "poll")
        world.on_ring = self._ring

    def _ring(self, event: str) -> None:
        if event == "task_finished":
            self._retire_drained()

    def _retire_drained(self) -> None:
        for w in list(self.world.live.values()):
            if w.status == WorkerStatus.TERMINATING and w.task is None:
                self.world.terminate(w.id)

    def handle(self, payload: object) -> None:
        self.cycle()
        self.world.schedule(self.world.now + POLL_SEC, "poll")

    def cycle(self) -> None:
        world, r, now = self.world, self.rule, self.world.now
        for w in list(world.live.values()):
            beat = world.last_heartbeat(w)
            if beat is not None and now - beat > r.liveness:
                world.terminate(w.id)
        self._retire_drained()
        metric = world.queued + world.in_progress
        wanted = min(max(r.min_active, math.ceil(metric / r.threshold)), r.max_active)
        self.history = [(t, d) for t, d in self.history if now - t < r.cooldown]
        self.history.append((now, wanted))
        desired = max(d for _, d in self.history)
        serving = [w for w in world.live.values() if w.status != WorkerStatus.TERMINATING]
        if len(serving) > desired:
            order = sorted(serving, key=lambda w: (w.task is not None, -w.created_at))
            for w in order[: len(serving) - desired]:
                if w.task is None:
                    world.terminate(w.id)
                else:
                    world.drain(w.id)
        live_count = len(world.live)
        for _ in range(min(desired - len(serving), r.max_active - live_count)):
            with contextlib.suppress(CapacityError):  # tried again at the next poll
                world.create_pod()


def lower_bound(world: World, startup: float) -> dict[str, float | list[float]]:
    """No policy beats this: every task's GPU-seconds billed exactly (no start-up, no
    idle), and a task waits only when no GPU is free, then one median start-up. A GPU is
    free when a task on it has ended and no other has taken it since (holding it costs
    nothing here); at most MAX GPUs. Waits are from when a task became claimable."""
    specs = {t.spec.id: t.spec for t in world.tasks.values()}
    deps_left = {i: set(s.deps) for i, s in specs.items() if s.deps}
    dependants: dict[int, list[int]] = {}
    for s in specs.values():
        for d in s.deps:
            dependants.setdefault(d, []).append(s.id)
    # (when it may next try to start, when it became claimable, id)
    pending = [(s.arrival, s.arrival, s.id) for s in specs.values() if not s.deps]
    heapq.heapify(pending)
    running: list[tuple[float, int]] = []  # (end, id)
    free, cap = 0, world.config.max_active_gpus
    waits: list[float] = []
    while pending or running:
        if running and (not pending or running[0][0] <= pending[0][0]):
            end, tid = heapq.heappop(running)
            free += 1
            for d in dependants.get(tid, ()):
                deps_left[d].discard(tid)
                if not deps_left[d]:
                    ready = max(end, specs[d].arrival)
                    heapq.heappush(pending, (ready, ready, d))
            continue
        t, ready, tid = heapq.heappop(pending)
        if free > 0:
            free -= 1
            start = t
        elif len(running) < cap:
            start = t + startup
        else:  # every GPU busy: try again when the first ends
            heapq.heappush(pending, (running[0][0], ready, tid))
            continue
        waits.append(start - ready)
        heapq.heappush(running, (start + specs[tid].duration, tid))
    return {"gpu_seconds": sum(s.duration for s in specs.values()), "waits": waits}
