"""The workloads: seeded, reproducible traces of task arrivals for one simulated span.

Each task has an arrival (its insert), a duration on a GPU, and the tasks it depends on
(the seed's chains). Durations are heavy-tailed between 20 s and 20 min: a lognormal
with a median of 90 s, clipped.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

MIN_DURATION = 20.0
MAX_DURATION = 1200.0
WORKLOADS = ("steady", "diurnal", "bursts", "chains")


@dataclass(frozen=True)
class TaskSpec:
    id: int
    arrival: float  # seconds from the start of the span
    duration: float  # GPU-seconds
    deps: tuple[int, ...] = ()


def _duration(rng: random.Random, median: float = 90.0, sigma: float = 1.0) -> float:
    return min(max(rng.lognormvariate(math.log(median), sigma), MIN_DURATION), MAX_DURATION)


def _poisson(rng: random.Random, rate_at: object, span: float, peak: float) -> list[float]:
    """Arrival times of a Poisson process with rate ``rate_at(t)`` (<= ``peak``, per
    second), by thinning."""
    times, t = [], 0.0
    assert callable(rate_at)
    while True:
        t += rng.expovariate(peak)
        if t >= span:
            return times
        if rng.random() * peak <= rate_at(t):
            times.append(t)


def steady(rng: random.Random, span: float, per_hour: float) -> list[TaskSpec]:
    rate = per_hour / 3600
    times = _poisson(rng, lambda t: rate, span, rate)
    return [TaskSpec(i, t, _duration(rng)) for i, t in enumerate(times)]


def diurnal(rng: random.Random, span: float, per_hour: float) -> list[TaskSpec]:
    """A day: quiet at night (a tenth of the mean), peaking at 15:00 (about twice it)."""
    mean = per_hour / 3600

    def rate(t: float) -> float:
        hour = (t / 3600) % 24
        return mean * (0.1 + 1.9 * max(0.0, math.cos((hour - 15) / 24 * 2 * math.pi)) ** 2)

    times = _poisson(rng, rate, span, 2.0 * mean)
    return [TaskSpec(i, t, _duration(rng)) for i, t in enumerate(times)]


def bursts(rng: random.Random, span: float, size: int = 200) -> list[TaskSpec]:
    """``size`` tasks inserted at once at the start of every hour, nothing between."""
    specs: list[TaskSpec] = []
    hour = 0.0
    while hour < span:
        specs += [TaskSpec(len(specs) + k, hour + 60.0, _duration(rng)) for k in range(size)]
        hour += 3600
    return specs


def chains(rng: random.Random, span: float, per_hour: float, segments: int = 6) -> list[TaskSpec]:
    """The seed's shape: an orchestrator task, ``segments`` segment tasks that depend on
    it, and a stitch task that depends on every segment; all inserted at once (the
    dependants wait, Queued, for what they depend on). ``per_hour`` chains per hour."""
    rate = per_hour / 3600
    specs: list[TaskSpec] = []
    for t in _poisson(rng, lambda t: rate, span, rate):
        head = len(specs)
        specs.append(TaskSpec(head, t, _duration(rng, median=30, sigma=0.5)))
        segs = [head + 1 + k for k in range(segments)]
        specs += [TaskSpec(s, t, _duration(rng, median=240, sigma=0.8), (head,)) for s in segs]
        specs.append(TaskSpec(head + 1 + segments, t, _duration(rng, median=60), tuple(segs)))
    return specs


def build(name: str, seed: int, span: float) -> list[TaskSpec]:
    """The trace of workload ``name``; the same seed gives the same trace."""
    rng = random.Random(f"{name}:{seed}")
    match name:
        case "steady":
            return steady(rng, span, per_hour=150)
        case "diurnal":
            return diurnal(rng, span, per_hour=150)
        case "bursts":
            return bursts(rng, span)
        case "chains":
            return chains(rng, span, per_hour=12)
    raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")
