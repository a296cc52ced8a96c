"""Carry out the policy's actions: database writes first (intent), then the provider.

Every action is recorded three ways: a structured log line, a metric and an entry in
ReactorState.actions. What the outcomes teach (spawn pauses and backoff, pods that never
start, terminates that failed, the price of a new worker) is reported to the SpawnGate,
which the policy, /status and the metrics read; the executor decides nothing itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

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
from reactor.domain.model import Limits, WorkerState, WorkerStatus
from reactor.domain.pools import Pool, Pools
from reactor.domain.spawn_gate import Pause, SpawnFailure, SpawnGate, StartBreaker, in_order
from reactor.engine import bookkeeping
from reactor.engine.breaker import breaker_key, load_breaker, save_breaker
from reactor.engine.metrics import Metrics
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import (
    CapacityError,
    InsufficientBalance,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RequestRejected,
)
from reactor.logs import WORKER_TOKEN_PREFIX
from reactor.providers.base import FLEET_ENV, POOL_ENV, WORKER_TOKEN_ENV, PodSpec, Provider
from reactor.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def new_worker_id(fleet: str) -> str:
    return f"{fleet}-{secrets.token_hex(4)}"


def pod_env(settings: Settings, worker_id: str, token: str) -> dict[str, str]:
    """A new pod's environment. gpu-worker gets its DSN, its token and the settings that
    must fit the reactor's; the seed's Headless-Wan2GP worker reaches Supabase through
    WORKER_EXTRA_ENV alone, so it gets no DSN of gpu-reactor's. Both get WORKER_ID and
    the fleet's mark."""
    if settings.worker_protocol == "headless-wan2gp":
        fleet = {"WORKER_ID": worker_id, FLEET_ENV: settings.reactor_fleet}
        return {**settings.worker_extra_env, **fleet}
    return {
        **settings.worker_env(),
        "WORKER_ID": worker_id,
        WORKER_TOKEN_ENV: token,
        "DATABASE_URL": settings.worker_dsn(),
        FLEET_ENV: settings.reactor_fleet,
    }


async def run_owned(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run all concurrently; their results in order. If one raises, the others are
    cancelled and awaited before its exception propagates (asyncio.gather would leave them
    running, owned by nobody)."""
    pending = list(coros)
    if len(pending) <= 1:
        return [await c for c in pending]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in pending]
    except BaseExceptionGroup as failed:
        first, *others = failed.exceptions
        for other in others:
            log.error("action_failed_as_well", exc_info=other)
        raise first from None
    return [t.result() for t in tasks]


def _failure_of(exc: ProviderError) -> SpawnFailure:
    if isinstance(exc, InsufficientBalance):
        return SpawnFailure.INSUFFICIENT_BALANCE
    if isinstance(exc, RateLimited):
        return SpawnFailure.RATE_LIMITED
    if isinstance(exc, CapacityError):
        return SpawnFailure.NO_CAPACITY
    if isinstance(exc, PermanentProviderError):
        return SpawnFailure.REJECTED
    return SpawnFailure.UNCERTAIN


@dataclass
class Applied:
    """What one ``apply`` did."""

    records: list[ActionRecord] = field(default_factory=list)
    first_action_at: float | None = None  # time.monotonic() when its first action went out
    slot_freed: bool = False  # a pod whose terminate had failed is gone: decide again

    def sent(self) -> None:
        if self.first_action_at is None:
            self.first_action_at = time.monotonic()


class Executor:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool | GuardedPool,
        provider: Provider,
        settings: Settings,
        metrics: Metrics,
        state: ReactorState,
        gate: SpawnGate | None = None,
        pools: Pools | None = None,
    ) -> None:
        """
        :param gate: where the first pool's outcomes are reported; one of its own when None.
        :param pools: the GPU pools (default: one, from ``settings``); each has its own
            spawn gate and its own view of the provider (its GPU types, image, price).
        """
        self.pool = guarded(pool)
        self.provider = provider
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self.pools = pools or Pools.single(settings)
        first = self.pools.first
        self.gates: dict[str, SpawnGate] = {
            first.name: gate if gate is not None else SpawnGate.for_settings(first.settings)
        }
        self._providers: dict[str, tuple[Settings, Provider]] = {}
        self._saved: dict[str, StartBreaker] = {}  # each breaker as last written
        self.set_pools(self.pools)

    @property
    def gate(self) -> SpawnGate:
        """The first pool's spawn gate (the only one without POOLS_FILE)."""
        return self.gates[self.pools.first.name]

    def set_pools(self, pools: Pools) -> None:
        """Carry on with these pools (a reload): a gate for each new pool, a provider view
        for each new or changed one. The gates of removed pools stay: the terminates they
        retry are still owed."""
        first_before = self.pools.first.name
        self.pools = pools
        for p in pools:
            if p.name not in self.gates:
                self.gates[p.name] = SpawnGate.for_settings(p.settings)
                self._saved[p.name] = StartBreaker()
            self._saved.setdefault(p.name, self.gates[p.name].breaker)
            known = self._providers.get(p.name)
            if known is None or known[0] != p.settings:
                self.gates[p.name].retune(p.settings)
                self._providers[p.name] = (p.settings, self._provider_for(p))
        if pools.first.name != first_before:  # the rows are keyed by which pool is first
            self._saved.clear()  # every breaker is written under its new key next

    def _provider_for(self, pool: Pool) -> Provider:
        if not self.pools.routed:
            return self.provider
        for_pool = getattr(self.provider, "for_pool", None)
        return for_pool(pool.settings) if for_pool is not None else self.provider

    def _pool(self, name: str | None) -> Pool:
        return self.pools.get(name) or self.pools.first

    def _gate(self, pool: str | None) -> SpawnGate:
        """The gate of a pool that may have left the file since (its gate stays)."""
        if pool is not None and pool in self.gates:
            return self.gates[pool]
        return self.gate

    def limits(self, now: datetime) -> dict[str, Limits]:
        """Each pool's Limits at ``now``, for the policy."""
        return {name: gate.limits(now) for name, gate in self.gates.items()}

    def _breaker_key(self, pool: str) -> str:
        return breaker_key(self.settings.reactor_fleet, self.pools.first.name, pool)

    # --- what a new leader carries on from ---------------------------------------------
    async def load_breaker(self) -> None:
        """Carry on from the start-failure breakers the previous leader left."""
        for name in self.pools.names:
            gate = self.gates[name]
            gate.restore(await load_breaker(self.pool, self._breaker_key(name)))
            self._saved[name] = gate.breaker
            if gate.breaker.failures:
                log.info(
                    "start_failures_loaded",
                    extra={"pool": name, "failures_in_a_row": gate.breaker.failures},
                )

    async def _save_breaker(self) -> None:
        for name, gate in self.gates.items():
            breaker = gate.breaker
            if breaker == self._saved.get(name):
                continue
            try:
                await save_breaker(self.pool, self._breaker_key(name), breaker)
            except TRANSIENT_DB_ERRORS as exc:  # written after the next apply instead
                log.warning("start_failures_not_saved", extra={"error": str(exc)[:300]})
                return
            self._saved[name] = breaker

    # --- outcomes that are not actions -------------------------------------------------
    def observe(self, workers: Iterable[WorkerState]) -> None:
        """A worker that started after the last start failure: its pool's pods start again."""
        by_pool: dict[str, list[WorkerState]] = {}
        for w in workers:
            pool = self.pools.pool_of(w)
            if pool is not None:
                by_pool.setdefault(pool.name, []).append(w)
        for name, members in by_pool.items():
            gate = self.gates[name]
            before = gate.start_failures
            started = gate.observe(members)
            if started is not None:
                log.info(
                    "workers_start_again",
                    extra={"pool": name, "worker_id": started, "failures_before": before},
                )

    async def refresh_price(self, workers: Iterable[WorkerState]) -> None:
        """What a new worker of each pool is expected to cost: the pool's fixed price, or
        the larger of its catalog price and its dearest live worker's."""
        seen: dict[str, float] = {}
        for w in workers:
            pool = self.pools.pool_of(w)
            if pool is not None:
                seen[pool.name] = max(seen.get(pool.name, 0.0), w.cost_per_hr)
        for name in self.pools.names:
            gate, provider = self.gates[name], self._providers[name][1]
            price = None
            if not gate.price_is_fixed:
                try:
                    price = await provider.estimated_price()
                except ProviderError as exc:
                    log.warning("price_lookup_failed", extra={"pool": name, "error": str(exc)})
            gate.price_seen(price, seen.get(name, 0.0))

    def _paused(self, pause: Pause | None, now: datetime) -> None:
        if pause is not None:
            seconds = (pause.until - now).total_seconds()
            log.warning(
                "spawns_paused", extra={"seconds": round(seconds, 1), "reason": pause.reason}
            )

    # --- running actions -----------------------------------------------------------------
    async def apply(self, actions: list[Action], now: datetime) -> Applied:
        """Run the actions in order (independent ones concurrently) and record them.

        ``now`` is the database clock of the snapshot they were decided on.
        """
        out = Applied()
        gates = list(self.gates.values())
        held = frozenset().union(*(g.unconfirmed for g in gates))
        retry = [(g, pod, why) for g in gates for pod, why in g.terminations_due(now)]
        if retry:
            out.records += await run_owned(
                self._terminate_pod(pod_id, why, "retry", now, gate) for gate, pod_id, why in retry
            )
        first, ending, spawns = in_order(actions)
        for batch in (first, ending):
            out.records += await run_owned(self._one(a, now, out) for a in batch)
        ready: list[Action] = []
        for a in spawns:
            deferred = self._gate(a.pool).deferral(now) if isinstance(a, Spawn) else None
            if deferred and isinstance(a, Spawn):
                out.records.append(
                    ActionRecord(time.time(), "spawn", "deferred", a.reason, detail=deferred[:300])
                )
            else:
                ready.append(a)
        out.records += await run_owned(self._one(a, now, out) for a in ready)
        out.slot_freed = bool(held - frozenset().union(*(g.unconfirmed for g in gates)))
        for record in out.records:
            self.state.record(record)
        await self._save_breaker()
        return out

    async def _one(self, action: Action, now: datetime, out: Applied) -> ActionRecord:
        out.sent()
        try:
            match action:
                case Spawn():
                    return await self._spawn(action, now)
                case Drain():
                    return await bookkeeping.drain(self.pool, self.metrics, action)
                case Retire():
                    return await self._retire(action, now)
                case RequeueTask():
                    return await bookkeeping.requeue_task(self.pool, self.metrics, action)
                case RequeueOrphans():
                    return await bookkeeping.requeue_orphans(self.pool, self.metrics, action)
                case TerminatePod():
                    return await self._terminate_pod(
                        action.pod_id, action.reason, action.cause, now, self.gate
                    )
                case AttachPod():
                    return await bookkeeping.attach_pod(self.pool, action)
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
        pool = self._pool(action.pool)
        gate, provider = self.gates[pool.name], self._providers[pool.name][1]
        worker_id = new_worker_id(self.settings.reactor_fleet)
        price = gate.expected_price
        # The pod's own credential: only a session holding it may act as this worker
        # (sql/migrations/0012_worker_tokens.sql). The database keeps its hash only.
        token = WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)
        # Intent first: a crash between this row and the create is reconciled by name.
        await self.pool.execute(
            query("insert_spawn_intent"),
            worker_id,
            price,
            action.reason,
            hashlib.sha256(token.encode()).digest(),
            pool.name,
        )
        env = pod_env(pool.settings, worker_id, token)
        if self.pools.routed:
            env[POOL_ENV] = pool.name
        try:
            pod = await provider.create(PodSpec(name=worker_id, env=env))
        except ProviderError as exc:
            return await self._spawn_failed(worker_id, action, exc, now, gate)
        cost = pod.cost_per_hr or price
        await self.pool.execute(query("record_pod"), worker_id, pod.id, pod.gpu_type, cost)
        gate.spawned()
        self.metrics.spawns.labels(outcome="ok").inc()
        log.info(
            "spawned",
            extra={
                "worker_id": worker_id,
                "pool": pool.name,
                "pod_id": pod.id,
                "gpu_type": pod.gpu_type,
                "cost_per_hr": cost,
                "reason": action.reason,
            },
        )
        return ActionRecord(
            time.time(), "spawn", "ok", action.reason, worker_id, pod.id, detail=pod.gpu_type or ""
        )

    async def _spawn_failed(
        self, worker_id: str, action: Spawn, exc: ProviderError, now: datetime, gate: SpawnGate
    ) -> ActionRecord:
        failure = _failure_of(exc)
        retry_after = exc.retry_after if isinstance(exc, RateLimited | RequestRejected) else 0.0
        self._paused(gate.spawn_failed(failure, str(exc), now, retry_after=retry_after), now)
        if failure is SpawnFailure.UNCERTAIN:
            # The pod may or may not exist: leave the intent; the sweep settles it by name.
            self.metrics.spawns.labels(outcome="unknown").inc()
            log.error("spawn_uncertain", extra={"worker_id": worker_id, "error": str(exc)})
        else:
            # Whatever the provider answered, the row must be written: Postgres text holds
            # no NUL.
            reason = f"create failed ({failure}): {exc}".replace("\x00", "")[:1000]
            await self.pool.execute(query("retire_worker"), worker_id, WorkerStatus.ERROR, reason)
            self.metrics.spawns.labels(outcome=failure.value).inc()
            log.error(
                "spawn_failed",
                extra={"worker_id": worker_id, "outcome": failure.value, "error": str(exc)},
            )
        return ActionRecord(
            time.time(), "spawn", failure.value, action.reason, worker_id, detail=str(exc)[:300]
        )

    async def _retire(self, action: Retire, now: datetime) -> ActionRecord:
        requeued = await bookkeeping.retire_row(self.pool, self.metrics, action)
        gate = self._gate(action.pool)
        if action.start_failed:
            pause = gate.start_failed(action.reason, now)
            log.error(
                "worker_never_started",
                extra={
                    "worker_id": action.worker_id,
                    "pool": action.pool,
                    "cause": action.cause,
                    "failures_in_a_row": gate.start_failures,
                },
            )
            self._paused(pause, now)
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
                "tasks_requeued": requeued,
            },
        )
        outcome = "ok"
        if action.pod_id:
            pod_record = await self._terminate_pod(action.pod_id, action.reason, None, now, gate)
            outcome = pod_record.outcome
        return ActionRecord(
            time.time(),
            "retire",
            outcome,
            action.reason,
            action.worker_id,
            action.pod_id,
            detail=f"{action.cause}; {requeued} task(s) requeued",
        )

    async def _terminate_pod(
        self, pod_id: str, reason: str, cause: str | None, now: datetime, gate: SpawnGate
    ) -> ActionRecord:
        """Terminate a pod; a failure is retried through ``gate`` (it holds a slot there)."""
        try:
            await self.provider.terminate(pod_id)
        except ProviderError as exc:
            retry_in = gate.terminate_failed(pod_id, reason, now)
            log.error(
                "terminate_failed",
                extra={"pod_id": pod_id, "error": str(exc), "retry_in": retry_in},
            )
            return ActionRecord(
                time.time(), "terminate_pod", "error", reason, pod_id=pod_id, detail=str(exc)[:300]
            )
        gate.terminated(pod_id)
        if cause is not None:
            self.metrics.terminations.labels(reason=cause).inc()
        log.info("pod_terminated", extra={"pod_id": pod_id, "reason": reason})
        return ActionRecord(time.time(), "terminate_pod", "ok", reason, pod_id=pod_id)
