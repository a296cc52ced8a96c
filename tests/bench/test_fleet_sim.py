"""Keep the fleet simulator running: one short seeded workload through every policy,
invariants only (nothing lost, caps never exceeded, the same seed the same figures).
No timing thresholds: the figures belong to the benchmark, not to the tests."""

from __future__ import annotations

import pytest

from bench.fleet_sim.report import add_ratios, table
from bench.fleet_sim.run import bound, policies, simulate
from bench.fleet_sim.workloads import build
from bench.fleet_sim.world import World, WorldConfig, at
from reactor.domain.breakeven import ARRIVAL_WINDOW_SEC

SPAN = 2 * 3600.0
CONFIG = WorldConfig(
    max_active_gpus=12,
    max_hourly_spend_usd=4.0,  # binds before the cap: 10 pods at the dearest price
    capacity_error_rate=0.2,
    deaths_per_pod_hour=0.5,
)


@pytest.mark.parametrize("workload", ["chains", "bursts"])
def test_every_policy_finishes_every_task_within_the_caps(workload: str) -> None:
    specs = build(workload, seed=7, span=SPAN)
    runs = {p.name: simulate(specs, p, CONFIG, 7, SPAN) for p in policies(CONFIG)}
    runs["lower bound"] = bound(specs, CONFIG, 7)
    add_ratios(runs)
    for name, f in runs.items():
        assert f["tasks"] == len(specs) > 0, name
        assert f["tasks_lost"] == 0, name
        assert f["cap_exceeded"] == 0, name
        if name.startswith("gpu-reactor"):  # the other rules have no budget to keep
            assert f["budget_exceeded"] == 0, name
        assert max((n for _, n, _ in f["series"]), default=0) <= CONFIG.max_active_gpus, name
        assert f["gpu_hours"] >= runs["lower bound"]["gpu_hours"] - 1e-9, name
    assert runs["gpu-reactor (defaults)"]["reconciles"] > 0
    assert runs["gpu-reactor (break-even)"]["reconciles"] > 0  # the new policy runs too
    assert sum(f["worker_deaths"] for f in runs.values() if "worker_deaths" in f) > 0
    assert workload in table({workload: runs}, "smoke")


def test_the_simulated_snapshots_carry_the_arrival_rate() -> None:
    # The break-even rule reads the tasks inserted in the window, as recent_arrivals does.
    specs = build("steady", seed=3, span=3600.0)
    world = World(specs, CONFIG, 3)
    while world.now < 1800 and (event := world.next_event()) is not None:
        world.handle(event[1], event[2])
    snap = world.snapshot(with_pods=False)
    inserted = [s.arrival for s in specs if world.now - ARRIVAL_WINDOW_SEC < s.arrival <= world.now]
    assert snap.arrivals == len(inserted) > 0
    assert snap.arrivals_since == at(min(inserted))


def test_the_same_seed_gives_the_same_figures() -> None:
    specs = build("steady", seed=3, span=3600.0)
    policy = policies(CONFIG)[0]
    first, again = (simulate(specs, policy, CONFIG, 3, 3600.0) for _ in range(2))
    first.pop("wall_sec"), again.pop("wall_sec")
    assert first == again
