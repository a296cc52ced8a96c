"""The demo's summary arithmetic (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reactor.demo.report import (
    burst_reactions,
    gpu_seconds,
    histogram_bound,
    peak_live,
    quantile,
)
from reactor.demo.workload import QueuedBurst

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_quantile_nearest_rank() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([4.0, 1.0, 2.0, 3.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_histogram_bound_is_the_upper_bound_of_the_bucket() -> None:
    buckets = [(0.001, 0.0), (0.005, 10.0), (1.0, 26.0), (2.5, 27.0), (float("inf"), 27.0)]
    assert histogram_bound(buckets, 0.5) == 1.0
    assert histogram_bound(buckets, 0.3) == 0.005
    assert histogram_bound(buckets, 0.99) == 2.5
    assert histogram_bound([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_burst_reaction_is_the_first_spawn_after_it_only() -> None:
    bursts = [
        QueuedBurst("b1", 12, at(0)),
        QueuedBurst("b2", 12, at(20)),
        QueuedBurst("act two", 3, at(40)),
    ]
    spawns = [at(0.004), at(0.006), at(40.003), at(46.0)]  # b2 found workers still up
    reactions = burst_reactions(bursts, spawns)
    assert [(r["burst"], r["seconds"]) for r in reactions] == [("b1", 0.004), ("act two", 0.003)]


def test_a_spawn_long_after_a_burst_is_not_its_reaction() -> None:
    assert burst_reactions([QueuedBurst("b1", 1, at(0))], [at(30)]) == []


def test_peak_and_gpu_seconds() -> None:
    workers = [
        {"created_at": at(0), "terminated_at": at(10)},
        {"created_at": at(5), "terminated_at": at(15)},
        {"created_at": at(10), "terminated_at": None},
    ]  # still live at the end
    assert peak_live(workers, at(20)) == 2  # one ends as the third starts
    assert gpu_seconds(workers, at(20)) == 30.0
