"""Carry out the policy's actions: database writes first (intent), then the provider.

Every action is recorded three ways: a structured log line, a metric and an entry in
ReactorState.actions. The executor also holds what the database does not know: spawn
backoff, the expected price of a new worker and pods whose terminate has not succeeded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import asyncpg

from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.pool import GuardedPool, guarded
from reactor.db.queries import query
from reactor.domain.actions import (
    Action,
    AttachPod,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    Spawn,
    TerminatePod,
)
from reactor.domain.model import (
    START_FAILURES_BEFORE_PROBING,
    Limits,
    WorkerState,
    WorkerStatus,
)
from reactor.engine.metrics import Metrics
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import (
    CapacityError,
    InsufficientBalance,
    PermanentProviderError,
    ProviderError,
    RateLimited,
)
from reactor.logs import WORKER_TOKEN_PREFIX
from reactor.providers.base import FLEET_ENV, WORKER_TOKEN_ENV, PodSpec, Provider
from reactor.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_SEC = 600.0
BALANCE_PAUSE_SEC = 600.0
MAX_START_PAUSE_SEC = 3600.0
START_FAILURE_REASON = "pods do not start"


def new_worker_id(fleet: str) -> str:
    return f"{fleet}-{secrets.token_hex(4)}"


class Executor:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool | GuardedPool,
        provider: Provider,
        settings: Settings,
        metrics: Metrics,
        state: ReactorState,
    ) -> None:
        self.pool = guarded(pool)
        self.provider = provider
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.expected_price = settings.gpu_hourly_price_usd
        self._backoff = 0.0
        self._blocked_until: datetime | None = None
        self._blocked_reason: str | None = None
        self._unconfirmed: dict[str, str] = {}  # pod id -> why it must go
        self._retry_at: datetime | None = None  # when to try those terminates again
        self._retry_backoff = 0.0
        self._start_failures = 0  # workers in a row that never sent a first heartbeat
        self._start_failed_at: datetime | None = None
        self.first_action_at: float | None = None

    # --- limits the policy needs -------------------------------------------------------
    def limits(self) -> Limits:
        return Limits(
            expected_price=self.expected_price,
            spawn_blocked_until=self._blocked_until,
            spawn_blocked_reason=self._blocked_reason,
            unconfirmed_pods=len(self._unconfirmed),
            terminate_retry_at=self._retry_at if self._unconfirmed else None,
            start_failures=self._start_failures,
        )

    def terminations_due(self, now: datetime) -> bool:
        return bool(self._unconfirmed) and (self._retry_at is None or now >= self._retry_at)

    async def refresh_price(self, seen_max: float) -> None:
        if self.settings.gpu_hourly_price_usd > 0:
            self.expected_price = self.settings.gpu_hourly_price_usd
            return
        try:
            price = await self.provider.estimated_price()
        except ProviderError as exc:
            log.warning("price_lookup_failed", extra={"error": str(exc)})
            price = None
        self.expected_price = max(price or 0.0, seen_max)
        self.state.expected_price = self.expected_price

    def _block_spawns(self, seconds: float, reason: str, now: datetime) -> None:
        until = now + timedelta(seconds=seconds)
        if self._blocked_until is None or until > self._blocked_until:
            self._blocked_until, self._blocked_reason = until, reason
        self.state.spawn_blocked_until = self._blocked_until.timestamp()
        self.state.spawn_blocked_reason = reason
        self.metrics.spawn_blocked.set(1)
        log.warning("spawns_paused", extra={"seconds": round(seconds, 1), "reason": reason})

    def observe(self, workers: Iterable[WorkerState]) -> None:
        """A worker that started after the last start failure: pods start again."""
        if not self._start_failures or self._start_failed_at is None:
            return
        started = [
            w.id
            for w in workers
            if w.managed  # a pod of ours, not a self-registered worker
            and w.activated_at is not None
            and w.activated_at > self._start_failed_at
        ]
        if not started:
            return
        log.info(
            "workers_start_again",
            extra={"worker_id": started[0], "failures_before": self._start_failures},
        )
        self._count_start_failures(0, None)
        if (self._blocked_reason or "").startswith(START_FAILURE_REASON):
            self._unblock_spawns()

    def _count_start_failures(self, count: int, at: datetime | None) -> None:
        self._start_failures, self._start_failed_at = count, at
        self.state.start_failures = count
        self.metrics.start_failures.set(count)

    def _start_failed(self, action: Retire, now: datetime) -> None:
        self._count_start_failures(self._start_failures + 1, now)
        log.error(
            "worker_never_started",
            extra={
                "worker_id": action.worker_id,
                "cause": action.cause,
                "failures_in_a_row": self._start_failures,
            },
        )
        if self._start_failures >= START_FAILURES_BEFORE_PROBING:
            # Pause for about as long as a start may take, doubling; then the policy sends
            # one probe pod at a time until a worker starts (observe resets this).
            extra = self._start_failures - START_FAILURES_BEFORE_PROBING
            pause = min(
                self.settings.spawning_timeout_sec * 2 ** min(extra, 16), MAX_START_PAUSE_SEC
            )
            self._block_spawns(
                pause,
                f"{START_FAILURE_REASON} ({self._start_failures} in a "
                f"row, last: {action.reason}); check "
                f"RUNPOD_CONTAINER_IMAGE, WORKER_DATABASE_URL and the "
                f"pods' logs",
                now,
            )

    def _unblock_spawns(self) -> None:
        self._blocked_until = self._blocked_reason = None
        self.state.spawn_blocked_until = self.state.spawn_blocked_reason = None
        self.metrics.spawn_blocked.set(0)

    def _spawn_succeeded(self) -> None:
        self._backoff = 0.0
        self._unblock_spawns()

    # --- running actions -----------------------------------------------------------------
    async def apply(self, actions: list[Action], now: datetime) -> list[ActionRecord]:
        """Run the actions (independent ones concurrently) and return their records."""
        self.first_action_at = None
        if self._blocked_until is not None and now >= self._blocked_until:
            self._blocked_until = self._blocked_reason = None
            self.metrics.spawn_blocked.set(0)
        records: list[ActionRecord] = []
        retry = (
            [
                self._terminate_pod(pod_id, why, "retry")
                for pod_id, why in list(self._unconfirmed.items())
            ]
            if self.terminations_due(now)
            else []
        )
        if retry:
            records += [r for r in await asyncio.gather(*retry) if r is not None]
        # Database-only bookkeeping first, then the pods that must go, then new pods: a
        # replacement is created only once the pod it replaces is gone, so live pods and
        # their cost never exceed the caps, not even for the length of a request.
        first = [
            a for a in actions if isinstance(a, RequeueTask | RequeueOrphans | Drain | AttachPod)
        ]
        ending = [a for a in actions if isinstance(a, Retire | TerminatePod)]
        spawns = [a for a in actions if a not in first and a not in ending]
        for batch in (first, ending):
            if batch:
                records += await asyncio.gather(*(self._one(a, now) for a in batch))
        deferred = None
        if self._unconfirmed:
            # A pod whose terminate failed still runs and bills: the slot it holds is not
            # free yet. The next reconcile counts it (Limits.unconfirmed_pods) and retries.
            deferred = f"{len(self._unconfirmed)} pod(s) not yet terminated"
        elif self._blocked_until is not None and now < self._blocked_until:
            # Paused by what this batch found (workers whose pods never started).
            deferred = f"spawns paused: {self._blocked_reason}"
        if spawns and deferred:
            records += [
                ActionRecord(time.time(), "spawn", "deferred", a.reason, detail=deferred[:300])
                for a in spawns
                if isinstance(a, Spawn)
            ]
            spawns = [a for a in spawns if not isinstance(a, Spawn)]
        if spawns:
            records += await asyncio.gather(*(self._one(a, now) for a in spawns))
        for record in records:
            self.state.record(record)
        return records

    def _mark_sent(self) -> None:
        if self.first_action_at is None:
            self.first_action_at = time.monotonic()

    async def _one(self, action: Action, now: datetime) -> ActionRecord:
        self._mark_sent()
        try:
            match action:
                case Spawn():
                    return await self._spawn(action, now)
                case Drain():
                    return await self._drain(action)
                case Retire():
                    return await self._retire(action, now)
                case RequeueTask():
                    return await self._requeue_task(action)
                case RequeueOrphans():
                    return await self._requeue_orphans(action)
                case TerminatePod():
                    record = await self._terminate_pod(action.pod_id, action.reason, action.cause)
                    assert record is not None
                    return record
                case AttachPod():
                    await self.pool.execute(query("attach_pod"), action.worker_id, action.pod_id)
                    log.info(
                        "pod_attached",
                        extra={"worker_id": action.worker_id, "pod_id": action.pod_id},
                    )
                    return ActionRecord(
                        time.time(),
                        "attach_pod",
                        "ok",
                        "pod found by name",
                        action.worker_id,
                        action.pod_id,
                    )
        except TRANSIENT_DB_ERRORS as exc:
            log.error("action_failed", extra={"action": action.kind, "error": str(exc)})
            return ActionRecord(
                time.time(),
                action.kind,
                "error",
                getattr(action, "reason", ""),
                getattr(action, "worker_id", None),
                detail=str(exc)[:300],
            )
        raise AssertionError(f"unknown action {action!r}")

    async def _spawn(self, action: Spawn, now: datetime) -> ActionRecord:
        fleet = self.settings.reactor_fleet
        worker_id = new_worker_id(fleet)
        # The pod's own credential: only a session holding it may act as this worker
        # (sql/migrations/0012_worker_tokens.sql). The database keeps its hash only.
        token = WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
        # Intent first: a crash between this row and the create is reconciled by name.
        await self.pool.execute(
            query("insert_spawn_intent"),
            worker_id,
            self.expected_price,
            action.reason,
            hashlib.sha256(token.encode()).digest(),
        )
        env = {
            **self.settings.worker_extra_env,
            "WORKER_ID": worker_id,
            WORKER_TOKEN_ENV: token,
            "DATABASE_URL": self.settings.worker_dsn(),
            FLEET_ENV: fleet,
        }
        try:
            pod = await self.provider.create(PodSpec(name=worker_id, env=env))
        except (CapacityError, InsufficientBalance, RateLimited, PermanentProviderError) as exc:
            return await self._spawn_refused(worker_id, action, exc, now)
        except ProviderError as exc:
            # The pod may or may not exist: leave the intent; the sweep settles it by name.
            self._backoff = min(
                max(self._backoff * 2, self.settings.spawn_failure_backoff_sec), MAX_BACKOFF_SEC
            )
            self._block_spawns(self._backoff, f"create failed: {exc}", now)
            self.metrics.spawns.labels(outcome="unknown").inc()
            log.error("spawn_uncertain", extra={"worker_id": worker_id, "error": str(exc)})
            return ActionRecord(
                time.time(), "spawn", "uncertain", action.reason, worker_id, detail=str(exc)[:300]
            )
        cost = pod.cost_per_hr or self.expected_price
        await self.pool.execute(query("record_pod"), worker_id, pod.id, pod.gpu_type, cost)
        self._spawn_succeeded()
        self.metrics.spawns.labels(outcome="ok").inc()
        log.info(
            "spawned",
            extra={
                "worker_id": worker_id,
                "pod_id": pod.id,
                "gpu_type": pod.gpu_type,
                "cost_per_hr": cost,
                "reason": action.reason,
            },
        )
        return ActionRecord(
            time.time(), "spawn", "ok", action.reason, worker_id, pod.id, detail=pod.gpu_type or ""
        )

    async def _spawn_refused(
        self, worker_id: str, action: Spawn, exc: ProviderError, now: datetime
    ) -> ActionRecord:
        if isinstance(exc, InsufficientBalance):
            outcome, pause = "insufficient_balance", BALANCE_PAUSE_SEC
        elif isinstance(exc, RateLimited):
            outcome, pause = "rate_limited", max(exc.retry_after, 1.0)
        elif isinstance(exc, CapacityError):
            outcome = "no_capacity"
            self._backoff = min(
                max(self._backoff * 2, self.settings.spawn_failure_backoff_sec), MAX_BACKOFF_SEC
            )
            pause = self._backoff
        else:
            outcome, pause = "rejected", MAX_BACKOFF_SEC
        self._block_spawns(pause, f"{outcome}: {exc}", now)
        # Whatever the provider answered, the row must be written: Postgres text holds no NUL.
        reason = f"create failed ({outcome}): {exc}".replace("\x00", "")[:1000]
        await self.pool.execute(query("retire_worker"), worker_id, "error", reason)
        self.metrics.spawns.labels(outcome=outcome).inc()
        log.error(
            "spawn_failed", extra={"worker_id": worker_id, "outcome": outcome, "error": str(exc)}
        )
        return ActionRecord(
            time.time(), "spawn", outcome, action.reason, worker_id, detail=str(exc)[:300]
        )

    async def _drain(self, action: Drain) -> ActionRecord:
        result = await self.pool.execute(query("mark_drain"), action.worker_id, action.reason)
        changed = result.endswith(" 1")
        if changed:
            self.metrics.drains.inc()
            log.info(
                "drain_requested", extra={"worker_id": action.worker_id, "reason": action.reason}
            )
        return ActionRecord(
            time.time(), "drain", "ok" if changed else "skipped", action.reason, action.worker_id
        )

    async def _retire(self, action: Retire, now: datetime) -> ActionRecord:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                query("retire_worker"), action.worker_id, action.status, action.reason
            )
            requeued = await conn.fetch(query("reset_orphaned_tasks"), [action.worker_id])
        for row in requeued:
            self.metrics.tasks_requeued.labels(reason=action.cause).inc()
            log.info(
                "task_requeued",
                extra={
                    "worker_id": action.worker_id,
                    "task_id": str(row["task_id"]),
                    "new_status": row["new_status"],
                    "reason": action.cause,
                },
            )
        self.metrics.terminations.labels(reason=action.cause).inc()
        if action.start_failed:
            self._start_failed(action, now)
        level = logging.INFO if action.status == WorkerStatus.TERMINATED else logging.WARNING
        log.log(
            level,
            "worker_retired",
            extra={
                "worker_id": action.worker_id,
                "pod_id": action.pod_id,
                "status": action.status,
                "cause": action.cause,
                "reason": action.reason,
                "tasks_requeued": len(requeued),
            },
        )
        outcome = "ok"
        if action.pod_id:
            pod_record = await self._terminate_pod(action.pod_id, action.reason, None)
            outcome = pod_record.outcome if pod_record else "ok"
        return ActionRecord(
            time.time(),
            "retire",
            outcome,
            action.reason,
            action.worker_id,
            action.pod_id,
            detail=f"{action.cause}; {len(requeued)} task(s) requeued",
        )

    async def _terminate_pod(
        self, pod_id: str, reason: str, cause: str | None
    ) -> ActionRecord | None:
        try:
            await self.provider.terminate(pod_id)
        except ProviderError as exc:
            self._unconfirmed[pod_id] = reason
            self._retry_backoff = min(max(self._retry_backoff * 2, 1.0), 60.0)
            self._retry_at = utcnow() + timedelta(seconds=self._retry_backoff)
            log.error(
                "terminate_failed",
                extra={"pod_id": pod_id, "error": str(exc), "retry_in": self._retry_backoff},
            )
            return ActionRecord(
                time.time(), "terminate_pod", "error", reason, pod_id=pod_id, detail=str(exc)[:300]
            )
        self._unconfirmed.pop(pod_id, None)
        if not self._unconfirmed:
            self._retry_at, self._retry_backoff = None, 0.0
        if cause is not None:
            self.metrics.terminations.labels(reason=cause).inc()
        log.info("pod_terminated", extra={"pod_id": pod_id, "reason": reason})
        return ActionRecord(time.time(), "terminate_pod", "ok", reason, pod_id=pod_id)

    async def _requeue_task(self, action: RequeueTask) -> ActionRecord:
        status = await self.pool.fetchval(
            query("requeue_task"), action.task_id, action.worker_id, action.attempt, action.reason
        )
        if status is not None:
            self.metrics.tasks_requeued.labels(reason=action.cause).inc()
            log.warning(
                "task_requeued",
                extra={
                    "task_id": action.task_id,
                    "worker_id": action.worker_id,
                    "new_status": status,
                    "reason": action.cause,
                },
            )
        return ActionRecord(
            time.time(),
            "requeue_task",
            "ok" if status else "skipped",
            action.reason,
            action.worker_id,
            detail=str(status or "moved on"),
        )

    async def _requeue_orphans(self, action: RequeueOrphans) -> ActionRecord:
        rows = await self.pool.fetch(query("reset_orphaned_tasks"), list(action.worker_ids))
        for row in rows:
            self.metrics.tasks_requeued.labels(reason=action.cause).inc()
            log.warning(
                "task_requeued",
                extra={
                    "task_id": str(row["task_id"]),
                    "new_status": row["new_status"],
                    "reason": action.cause,
                },
            )
        return ActionRecord(
            time.time(), "requeue_orphans", "ok", action.reason, detail=f"{len(rows)} task(s)"
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
