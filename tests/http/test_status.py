"""Pure parts of the HTTP layer: worker health, readiness, auth, the /status builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor.domain.model import Snapshot, TaskState, WorkerState
from reactor.domain.spawn_gate import SpawnFailure, SpawnGate
from reactor.engine.state import ActionRecord, ReactorState
from reactor.http.auth import authorized
from reactor.http.server import readiness
from reactor.ops.status import (
    StatusView,
    build_status,
    stale_worker_count,
    status_json,
    stuck_task_count,
    worker_health,
)
from reactor.settings import Settings

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    _env_file=None,
    DATABASE_URL="postgresql://reactor:db-pass-123@db/x",  # type: ignore[call-arg]
    GPU_IDLE_TIMEOUT_SEC=120,
    TASK_STUCK_TIMEOUT_SEC=600,
    SPAWNING_TIMEOUT_SEC=300,
    MAX_HOURLY_SPEND_USD=4,
    RUNPOD_API_KEY="rpa_k3y_abc",
)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def worker(
    status: str = "active", *, created: float = 1000, heartbeat: float | None = 5, **kwargs: object
) -> WorkerState:
    return WorkerState(
        id=f"gpu-reactor-{status}",
        status=status,
        created_at=ago(created),
        last_heartbeat=ago(heartbeat) if heartbeat is not None else None,
        activated_at=ago(created - 10) if status != "spawning" else None,
        **kwargs,
    )  # type: ignore[arg-type]


def task(started: float, worker_id: str = "gpu-reactor-active") -> TaskState:
    return TaskState(id=f"task-{started}", worker_id=worker_id, attempts=1, started_at=ago(started))


@pytest.mark.parametrize(
    ("state", "tasks", "expected"),
    [
        (worker("spawning", created=10, heartbeat=None), [], "starting"),
        (worker("spawning", created=301, heartbeat=None), [], "spawn_overdue"),
        (worker(heartbeat=121), [], "stale"),
        (worker(heartbeat=121), [task(700)], "stale"),  # dead beats stuck, as in the view
        (worker(), [task(601)], "stuck_task"),
        (worker("terminating"), [task(10)], "draining"),
        (worker(), [task(10)], "busy"),
        (worker(), [], "idle"),
        (worker(heartbeat=None, created=100), [], "idle"),  # activation counts as a sign of life
    ],
)
def test_worker_health(state: WorkerState, tasks: list[TaskState], expected: str) -> None:
    assert worker_health(state, tasks, SETTINGS, NOW) == expected


@pytest.mark.parametrize(
    ("role", "db", "listener", "ready"),
    [
        ("starting", True, True, False),
        ("stopping", True, True, False),
        ("standby", True, False, True),
        ("standby", False, False, False),
        ("leader", True, True, True),
        ("leader", True, False, False),
        ("leader", False, True, False),
    ],
)
def test_readiness(role: str, db: bool, listener: bool, ready: bool) -> None:
    assert readiness(role, db, listener)[0] is ready


def test_bearer_token_is_compared_exactly() -> None:
    assert authorized(None, None) and authorized("anything", "")
    assert authorized("Bearer s3cret", "s3cret")
    for header in (None, "", "Bearer", "Bearer s3cre", "bearer s3cret", "Bearer s3cret ", "s3cret"):
        assert not authorized(header, "s3cret"), header


def _state() -> ReactorState:
    busy = worker()
    snap = Snapshot(
        now=NOW,
        queued=4,
        in_progress=1,
        workers=(
            busy,
            worker("spawning", created=20, heartbeat=None, cost_per_hr=1.0),
            WorkerState(
                id="gpu-reactor-dead",
                status="active",
                created_at=ago(900),
                last_heartbeat=ago(500),
                cost_per_hr=2.0,
            ),
        ),
        running=(task(700),),
        oldest_queued_at=ago(90),
    )
    state = ReactorState(role="leader", started_at=NOW.timestamp() - 60)
    state.snapshot, state.desired_workers, state.db_ok = snap, 2, True
    state.record(
        ActionRecord(
            at=NOW.timestamp() - 5,
            kind="spawn",
            outcome="ok",
            reason="5 tasks need 2 workers, 1 live",
            worker_id="gpu-reactor-spawning",
        )
    )
    state.record(
        ActionRecord(
            at=NOW.timestamp() - 1,
            kind="retire",
            outcome="error",
            reason="heartbeat stale",
            worker_id="gpu-reactor-dead",
            detail="terminate failed: db-pass-123 leaked into a message",
        )
    )
    return state


def test_build_status_from_state() -> None:
    view = build_status(_state(), SETTINGS, provider="runpod", now=NOW.timestamp() + 2)
    assert view.role == "leader" and view.leader_present is True
    assert view.snapshot_age_sec == 2 and view.uptime_sec == 62
    assert view.queue is not None and view.queue.stuck_tasks == 1
    assert (view.queue.queued, view.queue.oldest_queued_age_sec, view.queue.desired_workers) == (
        4,
        90,
        2,
    )
    health = {w.id: (w.health, w.current_task_id) for w in view.workers}
    assert health == {
        "gpu-reactor-active": ("stuck_task", "task-700"),
        "gpu-reactor-spawning": ("starting", None),
        "gpu-reactor-dead": ("stale", None),
    }
    assert [a.kind for a in view.actions] == ["retire", "spawn"]  # newest first
    assert view.budget.hourly_burn_usd == 3.0 and view.budget.used_ratio == 0.75
    assert view.settings["DATABASE_URL"] == "**********"
    assert view.settings["RUNPOD_API_KEY"] == "**********"
    assert stale_worker_count(_state().snapshot, SETTINGS) == 1
    assert stuck_task_count(_state().snapshot, SETTINGS) == 1
    assert stale_worker_count(None, SETTINGS) == stuck_task_count(None, SETTINGS) == 0


def test_status_json_round_trips_and_scrubs_secrets() -> None:
    view = build_status(_state(), SETTINGS, now=NOW.timestamp())
    body = status_json(view, SETTINGS.secrets())
    assert b"db-pass-123" not in body and b"rpa_k3y_abc" not in body
    again = StatusView.model_validate_json(body)
    assert again.workers == view.workers
    assert "leaked into a message" in again.actions[0].detail


def test_status_before_the_first_snapshot() -> None:
    view = build_status(ReactorState(), SETTINGS)
    assert view.role == "starting" and view.queue is None and view.workers == []
    assert view.snapshot_at is None and view.budget.hourly_burn_usd == 0


def test_the_budget_shows_a_spawn_pause_only_while_it_lasts() -> None:
    # The bug: a pause that simply expired stayed on /status and the dashboard as "paused
    # until <a time in the past>" until a later spawn succeeded.
    state = _state()
    state.gate = SpawnGate.for_settings(SETTINGS)
    state.gate.spawn_failed(SpawnFailure.RATE_LIMITED, "429", NOW, retry_after=30)
    for _ in range(3):
        state.gate.start_failed("no heartbeat", NOW - timedelta(seconds=400))
    during = build_status(state, SETTINGS, now=NOW.timestamp() + 29).budget
    assert during.spawn_blocked_until == NOW + timedelta(seconds=30)
    assert during.spawn_blocked_reason == "rate_limited: 429"
    assert during.worker_start_failures == 3
    after = build_status(state, SETTINGS, now=NOW.timestamp() + 30).budget
    assert (after.spawn_blocked_until, after.spawn_blocked_reason) == (None, None)
    assert after.worker_start_failures == 3  # probing goes on until a worker starts


@pytest.mark.parametrize(
    ("connected", "since", "probe_ok", "error", "dsn_port", "hinted"),
    [
        (True, 100.0, 105.0, None, 5432, False),  # healthy
        (True, 100.0, 105.0, "probe not received", 5432, False),  # recovered from a blip
        (True, 100.0, 90.0, "probe not received", 5432, True),  # no probe since reconnecting
        (False, 100.0, None, "probe not received", 5432, True),
        (False, None, None, None, 6543, True),  # never connected, pooler port
        (False, None, None, "connection refused", 5432, False),
        (True, 100.0, None, None, 6543, False),  # just connected: give it a probe
    ],
)
def test_listener_hint_names_a_transaction_pooler(
    connected: bool,
    since: float | None,
    probe_ok: float | None,
    error: str | None,
    dsn_port: int,
    hinted: bool,
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=f"postgresql://u:p@aws-0-x.pooler.supabase.com:{dsn_port}/postgres",
    )
    state = ReactorState(role="leader")
    lh = state.listener
    lh.connected, lh.since, lh.last_probe_ok_at, lh.last_error = connected, since, probe_ok, error
    hint = build_status(state, settings).listener.hint
    assert (hint is not None) is hinted
    if hinted:
        assert "transaction-mode pooler" in hint and "session-mode" in hint
    state.role = "standby"
    assert build_status(state, settings).listener.hint is None
