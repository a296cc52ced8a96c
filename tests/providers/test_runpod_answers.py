"""What a Runpod create's answer means (reactor/providers/runpod_create.py): pure tables.

The same answers over real HTTP: test_runpod_create.py and test_runpod_refusals.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from reactor.errors import CapacityError, PermanentProviderError, RequestRejected
from reactor.providers.runpod_create import (
    REJECTED_HOLD_SEC,
    Candidate,
    CandidateBook,
    Refusal,
    Walk,
    create_outcome,
    is_no_capacity,
    misplacement,
    refusal_of,
)
from reactor.providers.runpod_http import Reply
from tests.fakes.runpod_v2_wire import NO_CAPACITY


@pytest.mark.parametrize(
    ("detail", "capacity"),
    [
        (NO_CAPACITY, True),
        # an older wording seen in public reports, and case or spacing changes
        (
            "There are no longer any instances available with the request specifications. "
            "Please try again later.",
            True,
        ),
        ("THERE ARE NO LONGER ANY\n instances  AVAILABLE", True),
        ("request could not be processed", False),  # the document's own 400 example
        (
            "Network volume vol-1 is in EU-RO-1; the pod must be placed in the same data center.",
            False,
        ),
        ("Unknown GPU type 'NVIDIA B300'.", False),
        ("no capacity", False),
        ("", False),
    ],
)
def test_only_runpods_no_capacity_text_is_capacity(detail: str, capacity: bool) -> None:
    assert is_no_capacity(detail) is capacity
    expected = Refusal.NO_CAPACITY if capacity else Refusal.REJECTED
    assert (
        refusal_of(Reply(400, {"title": "Bad Request", "status": 400, "detail": detail}, None))
        == expected
    )


def pod(data_center: str | None) -> dict[str, Any]:
    return {"id": "p1", "name": "n", "dataCenterId": data_center}


@pytest.mark.parametrize(
    ("status", "body", "required", "outcome"),
    [
        (201, pod("EU-RO-1"), None, "ok"),
        (201, pod("EU-RO-1"), "EU-RO-1", "ok"),
        (201, pod("US-TX-3"), "EU-RO-1", "misplaced"),
        (201, pod(None), "EU-RO-1", "ok"),  # not placed yet: cannot tell
        (400, {"detail": NO_CAPACITY}, None, "capacity"),
        (400, {"detail": "both mount kinds"}, None, "rejected"),
        (400, None, None, "rejected"),
        (403, {"detail": "access denied"}, None, "client_error"),
        (402, {"detail": "balance"}, None, "insufficient_balance"),
        (422, {"detail": "Request validation failed."}, None, "client_error"),
    ],
)
def test_the_metric_outcome_of_a_create(
    status: int, body: Any, required: str | None, outcome: str
) -> None:
    assert create_outcome(Reply(status, body, None), required) == outcome


def test_misplacement_names_both_data_centers() -> None:
    why = misplacement("US-TX-3", "EU-RO-1")
    assert why is not None and "US-TX-3" in why and "EU-RO-1" in why
    assert misplacement("EU-RO-1", "EU-RO-1") is None
    assert misplacement(None, "EU-RO-1") is None
    assert misplacement("US-TX-3", None) is None


A, B = Candidate("A", None), Candidate("B", None)


def walked(*refusals: tuple[Candidate, str]) -> Walk:
    walk = Walk()
    for candidate, detail in refusals:
        walk.refused(candidate, detail, Reply(400, {"detail": detail}, "req-1"))
    return walk


def test_a_rejected_request_holds_its_candidate_for_long_not_the_capacity_backoff() -> None:
    book = CandidateBook([A, B], backoff_base_sec=30)
    assert book.refused(A, Refusal.NO_CAPACITY, NO_CAPACITY, now=0) == 30
    assert book.refused(B, Refusal.REJECTED, "rule", now=0) == REJECTED_HOLD_SEC == 600
    assert book.ready(now=31) == [A]
    assert book.ready(now=600) == [A, B]


def test_every_candidate_rejected_is_a_request_rejected_naming_the_reasons() -> None:
    book = CandidateBook([A, B], backoff_base_sec=30)
    book.refused(A, Refusal.REJECTED, "rule one", now=0)
    book.refused(B, Refusal.REJECTED, "rule two", now=10)

    error = book.all_refused("w1", walked((A, "rule one"), (B, "rule two")), now=10)

    assert isinstance(error, RequestRejected) and isinstance(error, PermanentProviderError)
    assert "rule one" in str(error) and "rule two" in str(error)
    assert "last, B in any data center: rule two" in str(error)
    assert error.retry_after == 590  # when A is tried again
    assert (error.status, error.request_id) == (400, "req-1")
    waiting = book.none_ready(now=20)
    assert isinstance(waiting, RequestRejected) and waiting.retry_after == 580


def test_a_candidate_waiting_for_capacity_keeps_it_a_capacity_error() -> None:
    book = CandidateBook([A, B], backoff_base_sec=30)
    book.refused(A, Refusal.NO_CAPACITY, NO_CAPACITY, now=0)
    book.refused(B, Refusal.REJECTED, "rule", now=0)
    error = book.all_refused("w1", walked((A, NO_CAPACITY), (B, "rule")), now=0)
    assert type(error) is CapacityError
    assert "1 rejected the request itself" in str(error)
    assert type(book.none_ready(now=1)) is CapacityError


def test_rejected_and_forbidden_alone_stop_spawning_but_forbidden_alone_is_no_access() -> None:
    book = CandidateBook([A, B], backoff_base_sec=30)
    book.refused(A, Refusal.FORBIDDEN, "access denied", now=0)
    book.refused(B, Refusal.FORBIDDEN, "access denied", now=0)
    error = book.all_refused("w1", walked((A, "x"), (B, "x")), now=0)
    assert type(error) is PermanentProviderError and "no access" in str(error)
    book.refused(B, Refusal.REJECTED, "rule", now=0)
    assert isinstance(book.all_refused("w1", walked((B, "rule")), now=0), RequestRejected)


def test_a_success_forgets_the_candidates_refusals() -> None:
    book = CandidateBook([A], backoff_base_sec=30)
    book.refused(A, Refusal.REJECTED, "rule", now=0)
    book.succeeded(A)
    assert book.ready(now=0) == [A]
    book.refused(A, Refusal.NO_CAPACITY, NO_CAPACITY, now=0)
    assert type(book.none_ready(now=1)) is CapacityError
