"""STUCK_TASK_EXEMPT_TYPES: parents that rightly stay In Progress for hours are neither
stuck nor demand for a GPU (issue 14). The rule is pure; these tables pin it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reactor.domain import rules
from reactor.domain.actions import RequeueTask, Spawn
from reactor.domain.model import TaskState
from reactor.domain.policy import decide
from tests.domain.builders import NOW, make_settings, snap, task, worker

HOURS_3 = 3 * 3600


def typed(tid: str, wid: str | None, task_type: str, started: float = 10) -> TaskState:
    return replace(task(tid, wid, started=started), task_type=task_type)


@pytest.mark.parametrize(
    ("patterns", "task_type", "exempt"),
    [
        ("%_orchestrator", "travel_orchestrator", True),
        ("%_orchestrator", "orchestrator", False),  # _ is one character: none here
        ("%_orchestrator", "travel_orchestrator_v2", False),  # the whole type must match
        ("%_orchestrator", "Travel_Orchestrator", False),  # case-sensitive, as LIKE
        ("%_orchestrator", "travel_segment", False),
        ("travel\\_%", "travel_segment", True),  # an escaped _ is itself
        ("travel\\_%", "travelXsegment", False),
        ("a.b", "aXb", False),  # regex characters are themselves
        ("join_clips,%_orchestrator", "join_clips", True),
        ("", "anything", False),
    ],
)
def test_exemption_matches_the_whole_type_as_sql_like(
    patterns: str, task_type: str, exempt: bool
) -> None:
    settings = make_settings(STUCK_TASK_EXEMPT_TYPES=patterns)
    assert rules.is_exempt(typed("t", "w", task_type), settings) is exempt


@pytest.mark.parametrize(
    ("protocol", "setting", "expected"),
    [
        ("gpu-worker", None, ()),
        ("headless-wan2gp", None, ("%_orchestrator",)),
        ("headless-wan2gp", "", ()),  # set but empty: nothing exempt
        ("gpu-worker", "%_parent", ("%_parent",)),
    ],
)
def test_the_default_follows_the_worker_protocol(
    protocol: str, setting: str | None, expected: tuple[str, ...]
) -> None:
    extra = {} if setting is None else {"STUCK_TASK_EXEMPT_TYPES": setting}
    settings = make_settings(WORKER_PROTOCOL=protocol, **extra)
    assert settings.exempt_task_types() == expected


@pytest.mark.parametrize(
    ("protocol", "requeued"),
    [("gpu-worker", ["orch"]), ("headless-wan2gp", [])],
)
def test_an_exempt_task_is_never_stuck(protocol: str, requeued: list[str]) -> None:
    settings = make_settings(WORKER_PROTOCOL=protocol)
    s = snap(
        workers=(worker("w1", beat=1),),
        running=(typed("orch", "w1", "travel_orchestrator", started=HOURS_3),),
    )
    assert rules.stuck_timeout(s.running[0], settings, NOW).breached is bool(requeued)
    actions = decide(s, settings)
    assert [a.task_id for a in actions if isinstance(a, RequeueTask)] == requeued


def test_an_exempt_task_is_not_demand_but_its_children_are() -> None:
    settings = make_settings(WORKER_PROTOCOL="headless-wan2gp", TASKS_PER_GPU_THRESHOLD=1)
    running = (typed("orch", None, "travel_orchestrator", started=HOURS_3),)
    assert rules.gpu_demand(snap(running=running), settings) == 0
    assert [a for a in decide(snap(running=running), settings) if isinstance(a, Spawn)] == []
    assert rules.gpu_demand(snap(queued=2, running=running), settings) == 2
    plain = make_settings(TASKS_PER_GPU_THRESHOLD=1)
    assert rules.gpu_demand(snap(running=running), plain) == 1


def test_a_stuck_plain_task_beside_an_exempt_one_is_still_stuck() -> None:
    settings = make_settings(WORKER_PROTOCOL="headless-wan2gp")
    s = snap(
        workers=(worker("w1", beat=1),),
        running=(
            typed("orch", "w1", "travel_orchestrator", started=HOURS_3),
            typed("seg", "w1", "travel_segment", started=HOURS_3),
        ),
    )
    assert [a.task_id for a in decide(s, settings) if isinstance(a, RequeueTask)] == ["seg"]
