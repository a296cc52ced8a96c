"""gpu-reactor's policy in the simulator: the real deciding code on the simulated clock.

What runs is the reactor's own: ``WakeSchedule`` says when it wakes (the doorbell, the
coalescing window, the deadline, the sweep timer), ``policy.decide`` and
``policy.next_deadline`` decide on a snapshot of the simulated world, ``SpawnGate``
takes the outcomes (spawned, no capacity, a start failure) and yields the limits, and
``spawn_gate.in_order`` orders the batches as the executor does. Only the executor's
I/O is simulated: its actions change the world directly, and take no time.
"""

from __future__ import annotations

import math
import random

from bench.fleet_sim.world import CapacityError, World, at
from reactor.domain.actions import (
    Action,
    AttachPod,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    Spawn,
    TerminatePod,
)
from reactor.domain.policy import decide, next_deadline
from reactor.domain.spawn_gate import SpawnFailure, SpawnGate, in_order
from reactor.domain.wake import WakeSchedule
from reactor.settings import Settings


class ReactorPolicy:
    """One gpu-reactor, for one leadership term, on one simulated world."""

    def __init__(self, world: World, settings: Settings, seed: int) -> None:
        self.world = world
        self.settings = settings
        rng = random.Random(f"reactor:{seed}")
        self.gate = SpawnGate.for_settings(settings)
        # The provider's estimate is the dearest configured GPU type's catalog price.
        self.catalog_price = max(price for _, price in world.config.gpu_types)
        self.gate.price_seen(self.catalog_price, 0.0)
        self.wake = WakeSchedule(
            coalesce_window=settings.coalesce_window_sec,
            sweep_interval=settings.sweep_interval_sec,
            jitter=rng.uniform,
        )
        self.reconciles = 0
        self._rang_at: float | None = None  # the doorbell rang, no reconcile yet
        self._version = 0
        world.on_ring = self.ring
        self._arm()

    # --- when it wakes --------------------------------------------------------------------
    def ring(self, event: str) -> None:
        if event == "task_queued":
            self.wake.task_queued()
        if self._rang_at is None:
            self._rang_at = self.world.now
            self._arm()

    def _arm(self) -> None:
        """Schedule the next wake-up: the doorbell's (after its hold) or the timer's."""
        now = self.world.now
        due = self.wake.next_wake_at
        if self._rang_at is not None:
            due = min(due, now + self.wake.hold(now, rang=True))
        if due == math.inf:
            return
        self._version += 1
        self.world.schedule(max(due, now), "reactor", self._version)

    def handle(self, version: object) -> None:
        if version != self._version:
            return  # superseded by a later arming
        self._rang_at = None
        self.reconcile()
        self._arm()

    # --- one reconcile --------------------------------------------------------------------
    def reconcile(self) -> None:
        world, now = self.world, self.world.now
        kind = self.wake.begin(now)
        snap = world.snapshot(with_pods=kind == "sweep")
        self.gate.observe(snap.workers)
        if kind == "sweep":
            seen = max((w.cost_per_hr for w in snap.workers), default=0.0)
            self.gate.price_seen(self.catalog_price, seen)
        actions = decide(snap, self.settings, self.gate.limits(snap.now))
        self._apply(actions)
        self.reconciles += 1
        deadline = next_deadline(snap, self.settings, self.gate.limits(snap.now))
        self.wake.ran(now, kind, deadline=deadline, db_now=snap.now)

    def _apply(self, actions: list[Action]) -> None:
        """As the executor: bookkeeping, then the workers and pods that go, then spawns."""
        db_now = at(self.world.now)
        first, ending, spawns = in_order(actions)
        for action in [*first, *ending]:
            self._one(action)
        if spawns and self.gate.deferral(db_now) is None:
            for _ in spawns:
                try:
                    self.world.create_pod()
                except CapacityError as exc:
                    # The executor sends a batch's creates together: each one answers.
                    self.gate.spawn_failed(SpawnFailure.NO_CAPACITY, str(exc), db_now)
                    continue
                self.gate.spawned()

    def _one(self, action: Action) -> None:
        world = self.world
        match action:
            case RequeueTask():
                world.requeue(int(action.task_id))
            case RequeueOrphans():
                held = [
                    t.spec.id
                    for t in world.tasks.values()
                    if t.status == "In Progress" and t.worker in action.worker_ids
                ]
                for task_id in held:
                    world.requeue(task_id)
            case Drain():
                world.drain(action.worker_id)
            case Retire():
                world.terminate(action.worker_id)
                if action.start_failed:
                    self.gate.start_failed(action.reason, at(world.now))
            case TerminatePod():
                world.terminate(action.pod_name)
            case AttachPod() | Spawn():
                pass
