"""The demo's summary arithmetic (pure), per GPU pool too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor.demo.report import (
    burst_reactions,
    gpu_seconds,
    histogram_bound,
    peak_live,
    pool_summary,
    quantile,
    usd,
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


POOLS = {
    "big": {
        "task_types": ["video"],
        "runpod_gpu_types": ["H100 80GB"],
        "gpu_hourly_price_usd": 2.69,
        "max_active_gpus": 1,
    },
    "small": {
        "task_types": ["image"],
        "runpod_gpu_types": ["RTX 4090"],
        "gpu_hourly_price_usd": 0.69,
        "max_active_gpus": 3,
    },
}


def worker(pool: str, start: float, end: float | None, price: float) -> dict[str, object]:
    gpu = POOLS[pool]["runpod_gpu_types"][0]  # type: ignore[index]
    return {
        "pool": pool,
        "gpu_type": gpu,
        "cost_per_hr": price,
        "created_at": at(start),
        "terminated_at": None if end is None else at(end),
    }


def test_each_pool_counts_its_pods_task_types_and_cost() -> None:
    workers = [
        worker("big", 0, 3600, 2.69),
        worker("small", 0, 1800, 0.69),
        worker("small", 900, None, 0.69),  # live at the end (2700 s)
    ]
    ran = [
        {"task_type": "video", "pool": "big", "gpu_type": "H100 80GB", "tasks": 4},
        {"task_type": "image", "pool": "small", "gpu_type": "RTX 4090", "tasks": 9},
        {"task_type": "video", "pool": "small", "gpu_type": "RTX 4090", "tasks": 1},
    ]
    big, small = pool_summary(POOLS, workers, ran, at(2700))
    assert big["pods"] == 1 and big["peak_live"] == 1 and big["gpu_types_seen"] == ["H100 80GB"]
    assert big["ran"] == {"video": 4} and big["misrouted"] == 0
    assert big["gpu_seconds"] == 3600 and big["usd"] == 2.69
    assert small["pods"] == 2 and small["peak_live"] == 2
    assert small["ran"] == {"image": 9, "video": 1}
    assert small["misrouted"] == 1  # a video task on a small worker: not its type
    assert small["gpu_seconds"] == 1800 + 1800
    assert small["usd"] == pytest.approx(0.69)
    assert usd(workers, at(2700)) == pytest.approx(2.69 + 0.69)
