"""Snapshots, workers and tasks for the policy's table and property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reactor.domain.model import (
    Snapshot,
    TaskState,
    WorkerState,
    WorkerStatus,
)
from reactor.domain.pods import FLEET_ENV, Pod
from reactor.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_settings(**overrides: object) -> Settings:
    base = dict(
        MIN_ACTIVE_GPUS=0,
        MAX_ACTIVE_GPUS=4,
        TASKS_PER_GPU_THRESHOLD=2,
        GPU_IDLE_TIMEOUT_SEC=60,
        TASK_STUCK_TIMEOUT_SEC=600,
        SPAWNING_TIMEOUT_SEC=300,
        GRACEFUL_SHUTDOWN_TIMEOUT_SEC=120,
        SCALE_DOWN_IDLE_SEC=30,
        RUNPOD_GPU_TYPES="NVIDIA GeForce RTX 4090",
    )
    base.update({k: v for k, v in overrides.items()})
    return Settings(**base)  # type: ignore[arg-type]


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def worker(
    wid: str,
    status: str = "active",
    *,
    age: float = 1000,
    beat: float = 5,
    idle: float | None = None,
    **kw: object,
) -> WorkerState:
    activated = ago(age - 10) if status != "spawning" else None
    fields: dict[str, object] = dict(
        id=wid,
        status=WorkerStatus(status),
        created_at=ago(age),
        pod_id=f"pod-{wid}",
        cost_per_hr=1.0,
        activated_at=activated,
        last_heartbeat=ago(beat) if status != "spawning" else None,
        last_task_finished_at=ago(idle) if idle is not None else None,
    )
    fields.update(kw)
    return WorkerState(**fields)  # type: ignore[arg-type]


def snap(
    queued: int = 0,
    workers: tuple[WorkerState, ...] = (),
    running: tuple[TaskState, ...] = (),
    pods: tuple[Pod, ...] | None = None,
) -> Snapshot:
    return Snapshot(
        now=NOW,
        queued=queued,
        in_progress=len(running),
        workers=workers,
        running=running,
        pods=pods,
    )


def task(tid: str, wid: str | None, started: float = 10, attempts: int = 1) -> TaskState:
    return TaskState(id=tid, worker_id=wid, attempts=attempts, started_at=ago(started))


def kinds(actions: list[object]) -> list[str]:
    return [a.kind for a in actions]  # type: ignore[attr-defined]


def pod(pid: str, name: str, *, fleet: str | None = "gpu-reactor", status: str = "RUNNING") -> Pod:
    env = {FLEET_ENV: fleet} if fleet else {}
    return Pod(id=pid, name=name, status=status, env=env)
