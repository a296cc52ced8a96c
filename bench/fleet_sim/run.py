"""One simulation: a workload's trace, a policy, a world; and the figures it yields."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import percentile
from bench.fleet_sim.reactor_policy import ReactorPolicy
from bench.fleet_sim.rules import KedaPolicy, KedaRule, SeedPolicy, SeedRule, lower_bound
from bench.fleet_sim.workloads import TaskSpec
from bench.fleet_sim.world import World, WorldConfig
from reactor.settings import Settings

SAMPLE_SEC = 300.0  # fleet size and queue depth are sampled this often, for the plots
DRAIN_SEC = 4 * 3600.0  # after the span, time for the last tasks to finish
LOWER_BOUND = "lower bound"


def reactor_settings(config: WorldConfig, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": "postgresql://sim@localhost/sim",
        "MAX_ACTIVE_GPUS": config.max_active_gpus,
        "REACTOR_FLEET": "sim",
    }
    if config.max_hourly_spend_usd is not None:
        values["MAX_HOURLY_SPEND_USD"] = config.max_hourly_spend_usd
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    make: Callable[[World, int], Any]  # (world, seed) -> a policy with handle(payload)
    settings: dict[str, Any] = field(default_factory=dict)  # for the report


def policies(config: WorldConfig) -> list[PolicySpec]:
    # Tuned for minutes-long GPU tasks: a worker per task, drained after 30 s idle (the
    # seed's over-capacity idle time); and the same with a warm buffer of one.
    tuned = {"TASKS_PER_GPU_THRESHOLD": 1, "SCALE_DOWN_IDLE_SEC": 30}
    buffered = {**tuned, "MACHINES_TO_KEEP_IDLE": 1}
    # Break-even scale-down: a worker per task, idle workers kept by the arrival rate and
    # the fleet's own start-up time (SCALE_DOWN_IDLE_SEC, at its default, only caps it).
    breakeven = {"TASKS_PER_GPU_THRESHOLD": 1, "SCALE_DOWN_POLICY": "break-even"}
    seed, keda = (
        SeedRule(max_active=config.max_active_gpus),
        KedaRule(max_active=config.max_active_gpus),
    )
    return [
        PolicySpec(
            "gpu-reactor (defaults)",
            lambda w, s: ReactorPolicy(w, reactor_settings(config), s),
            {"defaults": True},
        ),
        PolicySpec(
            "gpu-reactor (tuned)",
            lambda w, s: ReactorPolicy(w, reactor_settings(config, **tuned), s),
            tuned,
        ),
        PolicySpec(
            "gpu-reactor (tuned, 1 idle)",
            lambda w, s: ReactorPolicy(w, reactor_settings(config, **buffered), s),
            buffered,
        ),
        PolicySpec(
            "gpu-reactor (break-even)",
            lambda w, s: ReactorPolicy(w, reactor_settings(config, **breakeven), s),
            breakeven,
        ),
        PolicySpec("seed rule", lambda w, s: SeedPolicy(w, seed), {"rule": repr(seed)}),
        PolicySpec("KEDA", lambda w, s: KedaPolicy(w, keda), {"rule": repr(keda)}),
    ]


def simulate(
    specs: list[TaskSpec], policy: PolicySpec, config: WorldConfig, seed: int, span: float
) -> dict[str, Any]:
    started = time.perf_counter()
    world = World(specs, config, seed)
    actor = policy.make(world, seed)
    t = 0.0
    while t <= span + DRAIN_SEC:
        world.schedule(t, "sample")
        t += SAMPLE_SEC
    end = span + DRAIN_SEC
    while (event := world.next_event()) is not None:
        now, kind, payload = event
        if now > end:
            break
        if kind in ("reactor", "poll"):
            actor.handle(payload)
        else:
            world.handle(kind, payload)
        if kind == "sample" and now >= span and world.done == len(world.tasks) and not world.live:
            break
    world.finish(min(world.now, end))
    return figures(world, policy.name, time.perf_counter() - started, actor)


def figures(world: World, name: str, wall: float, actor: Any) -> dict[str, Any]:
    billed, usd, busy, starting = world.billed()
    waits = [
        t.first_started_at - (t.ready_at if t.ready_at is not None else t.spec.arrival)
        for t in world.tasks.values()
        if t.first_started_at is not None
    ]
    s = world.stats
    return {
        "policy": name,
        "tasks": len(world.tasks),
        "gpu_hours": billed / 3600,
        "usd": usd,
        "wait_sec": _pcts(waits),
        "idle_share": (billed - busy - starting) / billed if billed else 0.0,
        "startup_share": starting / billed if billed else 0.0,
        "pods_created": s.pods_created,
        "tasks_lost": s.lost,
        "cap_exceeded": s.cap_exceeded,
        "budget_exceeded": s.budget_exceeded,
        "capacity_errors": s.capacity_errors,
        "worker_deaths": s.deaths,
        "requeues": s.requeues,
        "peak_pods": max((n for _, n, _ in s.series), default=0),
        "reconciles": getattr(actor, "reconciles", None),
        "wall_sec": wall,
        "series": [[round(t), n, q] for t, n, q in s.series],
    }


def bound(specs: list[TaskSpec], config: WorldConfig, seed: int) -> dict[str, Any]:
    world = World(specs, config, seed)
    lb = lower_bound(world, config.startup_median)
    waits = lb["waits"]
    assert isinstance(waits, list)
    gpu_sec = float(lb["gpu_seconds"])  # type: ignore[arg-type]
    price = config.gpu_types[0][1]
    return {
        "policy": LOWER_BOUND,
        "tasks": len(specs),
        "gpu_hours": gpu_sec / 3600,
        "usd": gpu_sec / 3600 * price,
        "wait_sec": _pcts(waits),
        "idle_share": 0.0,
        "startup_share": 0.0,
        "pods_created": None,
        "tasks_lost": 0,
        "cap_exceeded": 0,
        "budget_exceeded": 0,
        "series": [],
    }


def _pcts(values: list[float]) -> dict[str, float | None]:
    return {f"p{p}": percentile(values, p) for p in (50, 95, 99)}
