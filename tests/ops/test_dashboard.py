"""The dashboard's pure parts: alerts from one frame, and a frame rendered to text."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from io import StringIO
from typing import Any

import orjson
import pytest
from rich.console import Console

from reactor.ops.dashboard import DashboardData, compute_alerts, export_json, render_frame

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def overview(**values: Any) -> dict[str, Any]:
    base = {
        "queued_tasks": 0,
        "in_progress_tasks": 0,
        "completed_last_hour": 0,
        "failed_last_hour": 0,
        "cancelled_last_hour": 0,
        "oldest_queued_age_sec": None,
        "spawning_workers": 0,
        "active_workers": 0,
        "terminating_workers": 0,
        "error_workers": 0,
        "stale_workers": 0,
        "stuck_tasks": 0,
        "observed_at": NOW,
    }
    return {**base, **values}


def health_row(worker_id: str, health: str, **values: Any) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "pod_id": f"pod-{worker_id[-4:]}",
        "status": "active",
        "gpu_type": "NVIDIA L4",
        "cost_per_hr": 0.44,
        "managed": True,
        "created_at": NOW,
        "last_heartbeat": NOW,
        "heartbeat_age_sec": 3.0,
        "current_task_id": None,
        "current_task_type": None,
        "current_task_age_sec": None,
        "health": health,
        **values,
    }


def data(**values: Any) -> DashboardData:
    base: dict[str, Any] = {
        "observed_at": NOW,
        "fleet": "prod",
        "overview": overview(),
        "workers": [],
        "recent": [],
        "cost": {"hourly_burn_usd": 0.0, "live_workers": 0, "spent_today_usd": 0.0},
        "leader": {
            "pid": 4242,
            "application_name": "gpu-reactor-leader",
            "client_addr": "10.0.0.7",
            "backend_start": NOW,
        },
        "max_hourly_spend_usd": None,
        "max_active_gpus": 4,
    }
    return DashboardData(**{**base, **values})


def names(frame: DashboardData, previous: int | None = None) -> set[str]:
    return {a.name for a in compute_alerts(frame, previous)}


@pytest.mark.parametrize(
    ("frame", "previous", "expected"),
    [
        (data(), None, set()),
        (data(leader=None), None, {"no_leader"}),
        (
            data(
                overview=overview(stale_workers=1),
                workers=[health_row("gpu-reactor-dead0001", "stale")],
            ),
            None,
            {"stale_workers"},
        ),
        (data(overview=overview(stuck_tasks=2)), None, {"stuck_tasks"}),
        # A queue and no capacity: an alert when it grows or has waited a minute.
        (data(overview=overview(queued_tasks=5, oldest_queued_age_sec=5)), None, set()),
        (
            data(overview=overview(queued_tasks=5, oldest_queued_age_sec=5)),
            3,
            {"queue_no_capacity"},
        ),
        (
            data(overview=overview(queued_tasks=5, oldest_queued_age_sec=61)),
            None,
            {"queue_no_capacity"},
        ),
        (
            data(overview=overview(queued_tasks=5, oldest_queued_age_sec=600, spawning_workers=1)),
            3,
            set(),
        ),
        (
            data(workers=[health_row("gpu-reactor-late0001", "spawn_overdue")]),
            None,
            {"spawn_overdue"},
        ),
        (
            data(
                max_hourly_spend_usd=2.0,
                cost={"hourly_burn_usd": 1.8, "live_workers": 4, "spent_today_usd": 3.0},
            ),
            None,
            {"budget_near_cap"},
        ),
        (
            data(
                max_hourly_spend_usd=2.0,
                cost={"hourly_burn_usd": 1.7, "live_workers": 4, "spent_today_usd": 3.0},
            ),
            None,
            set(),
        ),
    ],
)
def test_alerts(frame: DashboardData, previous: int | None, expected: set[str]) -> None:
    assert names(frame, previous) == expected


def render(frame: DashboardData) -> str:
    console = Console(file=StringIO(), width=150, record=True, color_system=None)
    console.print(render_frame(frame))
    return console.export_text()


def test_a_frame_shows_the_queue_the_workers_and_the_alerts() -> None:
    workers = [
        health_row(
            "gpu-reactor-1a2b3c4d",
            "busy",
            current_task_id="0f7e6d5c-aaaa",
            current_task_age_sec=75.0,
        ),
        health_row("gpu-reactor-5e6f7a8b", "stale", heartbeat_age_sec=400.0),
    ]
    recent = [
        {
            "id": "0f7e6d5c-aaaa-bbbb",
            "task_type": "render",
            "status": "Complete",
            "worker_id": "gpu-reactor-1a2b3c4d",
            "attempts": 1,
            "max_attempts": 3,
            "created_at": NOW,
            "updated_at": NOW,
            "processing_sec": 12.5,
            "error_message": None,
        }
    ]
    frame = data(
        overview=overview(
            queued_tasks=17,
            in_progress_tasks=1,
            completed_last_hour=230,
            oldest_queued_age_sec=95,
            active_workers=2,
            stale_workers=1,
        ),
        workers=workers,
        recent=recent,
        max_hourly_spend_usd=1.0,
        cost={"hourly_burn_usd": 0.95, "live_workers": 2, "spent_today_usd": 4.2},
    )
    frame = replace(frame, alerts=compute_alerts(frame))
    text = render(frame)
    assert "gpu-reactor-1a2b3c4d" in text and "gpu-reactor-5e6f7a8b" in text
    assert "17" in text and "230" in text and "1m35s" in text  # queued, complete, oldest
    assert "complete 1h" in text
    assert "busy" in text and "stale" in text and "0f7e6d5c" in text and "6m40s" in text
    assert "$0.95/h" in text and "$4.20 spent today" in text and "95% used" in text
    assert "stale_workers" in text and "budget_near_cap" in text
    assert "leader pid 4242" in text and "render" in text


def test_an_empty_frame_and_a_failed_refresh() -> None:
    text = render(
        replace(
            data(leader=None),
            alerts=compute_alerts(data(leader=None)),
            error="cannot reach the database",
        )
    )
    assert "NO LEADER" in text and "(none)" in text and "no_leader" in text
    assert "refresh failed, showing the previous data: cannot reach the database" in text


def test_export_is_json() -> None:
    frame = data(workers=[health_row("gpu-reactor-1a2b3c4d", "idle")])
    frame = replace(frame, alerts=compute_alerts(frame))
    loaded = orjson.loads(export_json(frame))
    assert loaded["workers"][0]["worker_id"] == "gpu-reactor-1a2b3c4d"
    assert loaded["alerts"] == [] and loaded["fleet"] == "prod"
