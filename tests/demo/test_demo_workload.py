"""The demo's workload plan (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.demo.config import IMAGE, VIDEO
from reactor.demo.workload import ACT_TWO_TASKS, BURST_SPACING_SEC, VIDEO_EVERY, pid_of, plan

FULL_FLEET = 12  # MAX_ACTIVE_GPUS 4 x TASKS_PER_GPU_THRESHOLD 3


def test_default_run_has_three_full_fleet_bursts() -> None:
    p = plan(40, 90, full_fleet=FULL_FLEET)
    assert [len(b.seconds) for b in p.bursts] == [13, 12, 12]
    assert [b.at for b in p.bursts] == [0, BURST_SPACING_SEC, 2 * BURST_SPACING_SEC]
    assert len(p.act_two) == ACT_TWO_TASKS


def test_short_run_has_one_burst_that_fills_the_fleet() -> None:
    p = plan(15, 40, full_fleet=FULL_FLEET)
    assert [len(b.seconds) for b in p.bursts] == [12]


def test_one_task_in_every_few_is_a_video_task() -> None:
    [burst] = plan(15, 40, full_fleet=FULL_FLEET).bursts
    assert burst.types.count(VIDEO) == 12 // VIDEO_EVERY == 3
    assert burst.types.count(IMAGE) == 9


def test_too_few_tasks_are_refused() -> None:
    with pytest.raises(ValueError):
        plan(ACT_TWO_TASKS, 90, full_fleet=FULL_FLEET)


@given(tasks=st.integers(ACT_TWO_TASKS + 1, 2000), duration=st.floats(20, 3600))
def test_every_task_is_planned_once_within_the_run(tasks: int, duration: float) -> None:
    p = plan(tasks, duration, full_fleet=FULL_FLEET)
    assert p.tasks == tasks
    assert all(b.seconds for b in p.bursts)
    assert all(b.at <= duration / 2 for b in p.bursts)
    assert all(1.0 <= s <= 3.0 for b in p.bursts for s in b.seconds)
    assert all(len(b.types) == len(b.seconds) for b in p.bursts)
    assert all(b.types[0] == VIDEO and set(b.types) <= {VIDEO, IMAGE} for b in p.bursts)
    assert plan(tasks, duration, full_fleet=FULL_FLEET) == p  # deterministic


@pytest.mark.parametrize(
    ("pod_id", "pid"),
    [
        ("local-1234", 1234),
        ("local-", None),
        ("abc123xyz", None),
        (None, None),
        ("local-12a", None),
    ],
)
def test_pid_of_local_pod_ids(pod_id: str | None, pid: int | None) -> None:
    assert pid_of(pod_id) == pid
