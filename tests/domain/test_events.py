from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from reactor.domain.events import (
    DrainRequest,
    MalformedEvent,
    SweepRequest,
    TaskFinished,
    TaskQueued,
    WorkerStatus,
    parse_event,
)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"event":"task_queued"}', TaskQueued(event="task_queued")),
        ('{"event":"sweep"}', SweepRequest(event="sweep")),
        (
            '{"event":"drain","worker_id":"gpu-reactor-1"}',
            DrainRequest(event="drain", worker_id="gpu-reactor-1"),
        ),
        (
            '{"event":"task_finished","status":"Complete","worker_id":"w","extra":1}',
            TaskFinished(event="task_finished", status="Complete", worker_id="w"),
        ),
        (
            '{"event":"worker_status","worker_id":"w","status":"active"}',
            WorkerStatus(event="worker_status", worker_id="w", status="active"),
        ),
    ],
)
def test_known_events_parse(payload: str, expected: object) -> None:
    assert parse_event(payload) == expected


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("sweep", "not valid JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"event":"explode"}', "unknown event"),
        ('{"event":"drain"}', "worker_id"),
        ('{"event":"drain","worker_id":""}', "worker_id"),
        ('{"event":"drain","worker_id":5}', "worker_id"),
        ("{" * 9000, "too long"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: str, why: str) -> None:
    with pytest.raises(MalformedEvent, match=why):
        parse_event(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@hsettings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        json_values.map(lambda v: __import__("json").dumps(v)),
        st.dictionaries(
            st.sampled_from(["event", "worker_id", "status"]), json_values, max_size=3
        ).map(lambda v: __import__("json").dumps(v)),
    )
)
def test_arbitrary_payloads_never_raise_anything_but_malformed(payload: str) -> None:
    try:
        event = parse_event(payload)
    except MalformedEvent as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert event.event in {
            "task_queued",
            "task_finished",
            "worker_status",
            "worker_drained",
            "sweep",
            "drain",
        }
