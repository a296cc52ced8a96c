"""Pure pieces of the Runpod provider: body readers, header parsers, candidates.

Its per-candidate backoff is the domain's: tests/domain/test_spawn_gate.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.providers.base import PodSpec
from reactor.providers.ratelimit import parse_ratelimit, parse_retry_after
from reactor.providers.runpod import Candidate, RunpodProvider
from reactor.providers.runpod_http import outcome_of
from reactor.providers.runpod_parse import (
    MalformedBody,
    catalog_price,
    data_center_of,
    parse_pod,
    parse_pods,
    volume_data_center,
)
from reactor.settings import Settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

POD_KEYS = ["id", "name", "status", "gpu", "cost", "env", "createdAt", "runtime", "actions"]
pod_like = st.dictionaries(st.sampled_from(POD_KEYS), json_values, max_size=len(POD_KEYS))
list_like = st.fixed_dictionaries(
    {"pods": st.lists(pod_like | json_values, max_size=4)},
    optional={
        "pagination": st.dictionaries(st.sampled_from(["nextCursor", "hasNextPage"]), json_values)
        | json_values
    },
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, list_like))
def test_any_list_body_parses_or_is_malformed_never_crashes(body: Any) -> None:
    try:
        pods = parse_pods(body)
    except MalformedBody:
        return
    assert len({p.id for p in pods}) == len(pods)
    for pod in pods:
        assert pod.id and isinstance(pod.name, str) and isinstance(pod.status, str)
        assert pod.cost_per_hr >= 0.0
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in pod.env.items())


@pytest.mark.parametrize(
    "pagination",
    [None, {}, {"nextCursor": None, "hasNextPage": False}, [], "done", {"hasNextPage": "no"}],
)
def test_a_pagination_that_says_nothing_more_is_ignored(pagination: Any) -> None:
    assert [p.id for p in parse_pods({"pods": [{"id": "a"}], "pagination": pagination})] == ["a"]


@pytest.mark.parametrize(
    "pagination",
    [{"hasNextPage": True}, {"nextCursor": "c2"}, {"nextCursor": "c2", "hasNextPage": False}],
)
def test_a_list_that_says_it_is_partial_is_malformed_never_half_read(pagination: Any) -> None:
    # listPods declares no paging: the cursor is never followed, and part of the pods must
    # not pass for all of them (workers would be retired, their pods left billing unseen).
    with pytest.raises(MalformedBody, match="more pages"):
        parse_pods({"pods": [{"id": "a"}], "pagination": pagination})


def test_placement_and_volume_readers() -> None:
    assert data_center_of({"id": "a", "dataCenterId": "EU-RO-1"}) == "EU-RO-1"
    assert data_center_of({"id": "a", "dataCenterId": None}) is None
    assert data_center_of([]) is None
    assert volume_data_center({"id": "v", "dataCenter": "US-TX-3"}) == "US-TX-3"
    for bad in ({"id": "v"}, {"dataCenter": ""}, None, {"dataCenter": 3}):
        with pytest.raises(MalformedBody):
            volume_data_center(bad)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["SECURE", "COMMUNITY"]))
def test_any_catalog_body_gives_a_price_or_is_malformed(body: Any, cloud: str) -> None:
    try:
        price = catalog_price(body, "NVIDIA L4", cloud)
    except MalformedBody:
        return
    assert price is None or price > 0


def test_a_documented_pod_parses() -> None:
    pod = parse_pod(
        {
            "id": "abc",
            "name": "gpu-reactor-1",
            "status": "RUNNING",
            "actions": ["stop"],
            "gpu": {"id": "NVIDIA L4", "count": 1},
            "cloud": "SECURE",
            "dataCenterId": None,
            "cost": 0.43,
            "runtime": {},
            "env": {"GPU_REACTOR_FLEET": "gpu-reactor"},
            "createdAt": "2026-08-18T12:00:00.000Z",
            "startedAt": None,
        }
    )
    assert (pod.id, pod.status, pod.gpu_type, pod.cost_per_hr) == (
        "abc",
        "RUNNING",
        "NVIDIA L4",
        0.43,
    )
    assert pod.created_at is not None and pod.created_at.tzinfo is not None
    assert pod.belongs_to("gpu-reactor")
    only_named = parse_pod({"id": "a", "name": "gpu-reactor-1", "env": None})
    assert not only_named.belongs_to("gpu-reactor")  # both marks are needed


@pytest.mark.parametrize("cost", [None, "x", float("nan"), -1, True, 10**400, [1]])
def test_an_unusable_cost_reads_as_zero(cost: Any) -> None:
    assert parse_pod({"id": "a", "cost": cost}).cost_per_hr == 0.0


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        (None, None),
        ('"minute";r=5;t=12, "hour";r=2800;t=1812', None),
        ('"minute";r=0;t=12, "hour";r=2800;t=1812', 12.0),
        ('"minute";r=0;t=12, "hour";r=0;t=1812', 1812.0),
        ("limit=60, remaining=0, reset=7", 7.0),
        ("limit=60, remaining=3, reset=7", None),
        ('"minute";r=zero;t=x', None),
        ("garbage", None),
    ],
)
def test_ratelimit_header(header: str | None, wait: float | None) -> None:
    assert parse_ratelimit(header) == wait


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("soon", None),
        (None, None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_header(header: str | None, wait: float | None) -> None:
    assert parse_retry_after(header) == wait


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, "ok"),
        (400, "client_error"),
        (402, "insufficient_balance"),
        (404, "not_found"),
        (429, "rate_limited"),
        (503, "server_error"),
        (422, "client_error"),
    ],
)
def test_outcome_labels(status: int, outcome: str) -> None:
    # A create's answers are judged by runpod_create.create_outcome (test_runpod_answers).
    assert outcome_of(status) == outcome


def test_candidates_are_gpu_types_in_order_times_data_centers() -> None:
    values: dict[str, Any] = {
        "RUNPOD_API_KEY": "k",
        "RUNPOD_GPU_TYPES": "A,B",
        "RUNPOD_DATA_CENTERS": "X,Y",
    }
    settings_ = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    provider = RunpodProvider(settings=settings_)
    assert [(c.gpu_type, c.data_center) for c in provider.candidates()] == [
        ("A", "X"),
        ("A", "Y"),
        ("B", "X"),
        ("B", "Y"),
    ]
    assert provider.create_body(PodSpec("n", {"K": "v"}), provider.candidates()[1])[
        "dataCenterIds"
    ] == ["Y"]
    values.update(RUNPOD_GPU_TYPES="", RUNPOD_INSTANCE_TYPE="NVIDIA A40", RUNPOD_DATA_CENTERS="")
    seed = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert RunpodProvider(settings=seed).candidates() == [Candidate("NVIDIA A40", None)]
