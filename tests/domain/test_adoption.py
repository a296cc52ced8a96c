"""Adopted workers and foreign pods (issue 14 §3): a worker row gpu-reactor did not create
(managed=false, no pod: the seed orchestrator's) is counted as capacity and left alone
while it beats; a pod of the account without both of the fleet's marks is never touched."""

from __future__ import annotations

from reactor.domain.actions import Retire, Spawn, TerminatePod
from reactor.domain.model import WorkerState
from reactor.domain.policy import POD_LIST_GRACE, decide
from tests.domain.builders import make_settings, pod, snap, task, worker

OLD = POD_LIST_GRACE.total_seconds() * 10  # well past the pod list's grace


def seed_worker(beat: float) -> WorkerState:
    return worker("gpu-20260102_120000-5eed0001", managed=False, pod_id=None, age=OLD, beat=beat)


def test_a_healthy_adopted_worker_is_capacity_and_never_retired_on_a_sweep() -> None:
    settings = make_settings(TASKS_PER_GPU_THRESHOLD=1)
    adopted = seed_worker(beat=1)
    s = snap(queued=1, workers=(adopted,), running=(), pods=())
    actions = decide(s, settings)
    assert not [a for a in actions if isinstance(a, (Retire, Spawn, TerminatePod))]


def test_a_busy_adopted_worker_counts_toward_the_busy_ones() -> None:
    settings = make_settings(TASKS_PER_GPU_THRESHOLD=1)
    adopted = seed_worker(beat=1)
    s = snap(workers=(adopted,), running=(task("t", adopted.id),), pods=())
    assert [a for a in decide(s, settings) if isinstance(a, Spawn)] == []


def test_an_adopted_worker_that_stops_beating_is_retired_without_a_pod() -> None:
    settings = make_settings()
    s = snap(workers=(seed_worker(beat=3600),), pods=())
    [retire] = [a for a in decide(s, settings) if isinstance(a, Retire)]
    assert retire.pod_id is None and str(retire.cause) != "create_lost"


def test_pods_without_both_of_the_fleets_marks_are_never_terminated() -> None:
    settings = make_settings()
    foreign = (
        pod("p1", "gpu-20260102_120000-5eed0001", fleet=None),  # the seed orchestrator's
        pod("p2", "gpu-reactor-0a1b2c3d", fleet=None),  # our prefix, no env mark
        pod("p3", "someone-else", fleet="gpu-reactor"),  # our mark, another name
        pod("p4", "gpu-reactor-0a1b2c3d", fleet="other-fleet"),
    )
    s = snap(workers=(seed_worker(beat=1),), pods=foreign)
    assert [a for a in decide(s, settings) if isinstance(a, TerminatePod)] == []
    ours = pod("p5", "gpu-reactor-ffffffff")
    s = snap(pods=(*foreign, ours))
    assert [a.pod_id for a in decide(s, settings) if isinstance(a, TerminatePod)] == ["p5"]
