"""The one backoff formula and the per-candidate backoff, on plain numbers."""

from __future__ import annotations

import pytest

from reactor.domain.backoff import Backoff, CandidateBackoff, doubling


@pytest.mark.parametrize(
    ("base", "failures", "cap", "wait"),
    [
        (30, 0, 600, 0),
        (30, 1, 600, 30),
        (30, 2, 600, 60),
        (30, 5, 600, 480),
        (30, 6, 600, 600),
        (30, 10_000, 600, 600),  # no overflow, however long it fails
        (1, 7, 60, 60),
        (700, 1, 600, 600),
    ],
)
def test_doubling_from_the_base_to_the_cap(
    base: float, failures: int, cap: float, wait: float
) -> None:
    assert doubling(base, failures, cap) == wait


def test_candidate_backoff_doubles_caps_and_resets_on_the_callers_clock() -> None:
    backoff = CandidateBackoff[str](base_sec=30, cap_sec=600)
    now = 1000.0
    assert [backoff.failed("A", now) for _ in range(7)] == [30, 60, 120, 240, 480, 600, 600]
    assert not backoff.ready("A", now) and backoff.ready("B", now)
    assert backoff.wait_left("A", now + 599) == pytest.approx(1)
    assert backoff.ready("A", now + 600)
    backoff.succeeded("A")
    assert backoff.ready("A", now) and backoff.failed("A", now) == 30


def test_a_hold_keeps_a_candidate_back_without_touching_its_doubling() -> None:
    backoff = CandidateBackoff[str](base_sec=30, cap_sec=600)
    assert backoff.hold("A", 1000.0, 600) == 600
    assert not backoff.ready("A", 1599.0) and backoff.ready("A", 1600.0)
    assert backoff.hold("A", 1000.0, 10) == 600  # a shorter hold does not cut it short
    assert backoff.failed("A", 1600.0) == 30  # a hold is not a failure to double from
    backoff.succeeded("A")
    assert backoff.ready("A", 1600.0)


def test_a_backoff_counts_failures_and_starts_over() -> None:
    backoff = Backoff(1, 60)
    assert [backoff.failed() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.delay == 0 and backoff.failed() == 1
