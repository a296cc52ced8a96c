"""Backoff that doubles from a base up to a cap and starts over after a success.

One formula for every wait the reactor earns by failing: the spawn gate's capacity
backoff, its terminate retries and its start-failure pause, and the Runpod provider's
per-candidate backoff. Pure: the caller passes its own clock reading where one is needed.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from reactor.settings import MAX_SPAWN_BACKOFF_SEC

# Doublings past this many change nothing for any base above 1e-17 s (the cap is reached);
# the bound keeps 2 ** n a float that cannot overflow.
MAX_DOUBLINGS = 64


def doubling(base_sec: float, failures: int, cap_sec: float) -> float:
    """The wait after ``failures`` failures in a row: 0, base, 2 x base, 4 x base ... cap."""
    if failures <= 0:
        return 0.0
    return min(base_sec * 2.0 ** min(failures - 1, MAX_DOUBLINGS), cap_sec)


class Backoff:
    """Failures in a row and the wait they have earned."""

    def __init__(self, base_sec: float, cap_sec: float) -> None:
        self.base_sec, self.cap_sec = base_sec, cap_sec
        self.failures = 0

    @property
    def delay(self) -> float:
        return doubling(self.base_sec, self.failures, self.cap_sec)

    def failed(self) -> float:
        """Count one more failure; the wait it earns, in seconds."""
        self.failures += 1
        return self.delay

    def reset(self) -> None:
        self.failures = 0


K = TypeVar("K", bound=Hashable)


class CandidateBackoff(Generic[K]):
    """A backoff per candidate (a placement the provider may try), reset on its success.

    ``now`` is the caller's clock reading in seconds (any monotonic scale); the Runpod
    provider passes its own clock, so a test drives it with a fake one.
    """

    def __init__(self, *, base_sec: float, cap_sec: float = MAX_SPAWN_BACKOFF_SEC) -> None:
        self._base, self._cap = base_sec, cap_sec
        self._state: dict[K, tuple[int, float]] = {}  # failures, retry at

    def wait_left(self, candidate: K, now: float) -> float:
        failures_until = self._state.get(candidate)
        return 0.0 if failures_until is None else max(0.0, failures_until[1] - now)

    def ready(self, candidate: K, now: float) -> bool:
        return self.wait_left(candidate, now) <= 0

    def failed(self, candidate: K, now: float) -> float:
        """Count a refusal of ``candidate``; how long it now waits, in seconds."""
        failures = self._state.get(candidate, (0, 0.0))[0] + 1
        delay = doubling(self._base, failures, self._cap)
        self._state[candidate] = (failures, now + delay)
        return delay

    def hold(self, candidate: K, now: float, seconds: float) -> float:
        """Keep ``candidate`` back for ``seconds`` whatever its failures have earned (a
        refusal that is not worth doubling from a short base); the wait left, in seconds."""
        failures, until = self._state.get(candidate, (0, now))
        self._state[candidate] = (failures, max(until, now + seconds))
        return self.wait_left(candidate, now)

    def succeeded(self, candidate: K) -> None:
        self._state.pop(candidate, None)
