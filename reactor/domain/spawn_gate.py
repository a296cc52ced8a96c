"""The spawn gate: what the reactor learned from its own spawns and terminates, and the
limits on new spawns that follow from it.

Pure: no I/O and no clock. Every method that depends on time takes ``now``, the database
clock of the snapshot being acted on, so the policy, its deadlines and the gate compare
moments from one source; the tests drive it with plain datetimes.

    outcomes it takes                    what it yields
    spawned / spawn_failed               limits(now): the Limits the policy (and /status,
    start_failed / observe(workers)        the dashboard, the metrics) read
    terminate_failed / terminated        terminations_due(now): pods to terminate again
    price_seen                           deferral(now): why a batch's spawns must wait
                                         breaker / restore: what a new leader loads

A pause that has expired at ``now`` is simply not in ``limits(now)``: nothing has to end
it, so no reader can show one that is over.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reactor.domain.actions import (
    Action,
    AttachPod,
    Drain,
    RequeueOrphans,
    RequeueTask,
    Retire,
    TerminatePod,
)
from reactor.domain.backoff import Backoff, doubling
from reactor.domain.model import Limits, WorkerState
from reactor.settings import MAX_SPAWN_BACKOFF_SEC, Settings

# Workers in a row whose pod never sent a first heartbeat (a broken image, a wrong
# WORKER_DATABASE_URL, a crash at start) before the reactor stops paying for a full fleet
# of them: spawns pause, then one probe pod at a time until a worker starts again.
START_FAILURES_BEFORE_PROBING = 3
START_FAILURE_REASON = "pods do not start"
MAX_START_PAUSE_SEC = 3600.0  # the start-failure pause doubles from SPAWNING_TIMEOUT_SEC
BALANCE_PAUSE_SEC = 600.0  # after 402: the account must be topped up
REJECTED_PAUSE_SEC = MAX_SPAWN_BACKOFF_SEC  # after a create the provider will never accept
TERMINATE_RETRY_BASE_SEC = 1.0  # pods whose terminate failed: tried again after 1, 2 ... 60 s
TERMINATE_RETRY_MAX_SEC = 60.0


class SpawnFailure(StrEnum):
    """How a create failed; the values are the spawn records' outcomes."""

    NO_CAPACITY = "no_capacity"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"  # permanent: the provider will not accept this create
    UNCERTAIN = "uncertain"  # the answer was lost: the pod may exist (the sweep settles it)


@dataclass(frozen=True)
class Pause:
    until: datetime
    reason: str
    own: bool = True  # this pool's trouble, not the account's (see Limits.pool_unavailable)


@dataclass(frozen=True)
class StartBreaker:
    """Workers in a row whose pod never sent a first heartbeat, and the pause they set.

    The reactor keeps it in the database (gpu_reactor.spawn_breaker), so a new leader
    carries on counting instead of paying for three more pods that cannot start.
    """

    failures: int = 0
    last_failure_at: datetime | None = None
    pause: Pause | None = None


def in_order(actions: Iterable[Action]) -> tuple[list[Action], list[Action], list[Action]]:
    """The batches the executor runs one after the other: database-only bookkeeping, then
    the workers and pods that must go, then new pods. A replacement is created only once
    the pod it replaces is gone, so live pods and their cost never exceed the caps, not
    even for the length of a request."""
    first: list[Action] = []
    ending: list[Action] = []
    rest: list[Action] = []
    for action in actions:
        if isinstance(action, RequeueTask | RequeueOrphans | Drain | AttachPod):
            first.append(action)
        elif isinstance(action, Retire | TerminatePod):
            ending.append(action)
        else:
            rest.append(action)
    return first, ending, rest


class SpawnGate:
    """Spawn pauses and backoff, the start-failure breaker, unconfirmed terminates and the
    expected price of a new worker: what the reactor knows that the database does not."""

    def __init__(
        self,
        *,
        backoff_base_sec: float = 30.0,
        spawning_timeout_sec: float = 900.0,
        fixed_price: float = 0.0,
    ) -> None:
        """
        :param backoff_base_sec: first capacity backoff (SPAWN_FAILURE_BACKOFF_SEC).
        :param spawning_timeout_sec: first start-failure pause (SPAWNING_TIMEOUT_SEC).
        :param fixed_price: GPU_HOURLY_PRICE_USD; 0 means the price is looked up.
        """
        self._capacity = Backoff(backoff_base_sec, MAX_SPAWN_BACKOFF_SEC)
        self._start_pause_base = spawning_timeout_sec
        self._fixed_price = fixed_price
        self.expected_price = fixed_price  # USD/hour of one new worker
        self._pause: Pause | None = None  # set by the provider's answers to creates
        self._breaker = StartBreaker()
        self._unconfirmed: dict[str, str] = {}  # pod id -> why it must go
        self._retry = Backoff(TERMINATE_RETRY_BASE_SEC, TERMINATE_RETRY_MAX_SEC)
        self._retry_at: datetime | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> SpawnGate:
        return cls(
            backoff_base_sec=settings.spawn_failure_backoff_sec,
            spawning_timeout_sec=settings.spawning_timeout_sec,
            fixed_price=settings.gpu_hourly_price_usd,
        )

    def retune(self, settings: Settings) -> None:
        """Take a reloaded pool's settings; its pauses, breaker and owed terminates stay."""
        self._capacity.base_sec = settings.spawn_failure_backoff_sec
        self._start_pause_base = settings.spawning_timeout_sec
        self._fixed_price = settings.gpu_hourly_price_usd
        if self.price_is_fixed:
            self.expected_price = self._fixed_price

    # --- what it yields ------------------------------------------------------------------
    def limits(self, now: datetime) -> Limits:
        pause = self._pause_at(now)
        return Limits(
            expected_price=self.expected_price,
            spawn_blocked_until=pause.until if pause else None,
            spawn_blocked_reason=pause.reason if pause else None,
            unconfirmed_pods=len(self._unconfirmed),
            terminate_retry_at=self._retry_at if self._unconfirmed else None,
            start_failures=self._breaker.failures,
            pool_unavailable=pause is not None and pause.own,
        )

    def _pause_at(self, now: datetime) -> Pause | None:
        """The pause in force at ``now``: of those not yet over, the one that ends last."""
        active = [p for p in (self._pause, self._breaker.pause) if p and now < p.until]
        return max(active, key=lambda p: p.until, default=None)

    def terminations_due(self, now: datetime) -> list[tuple[str, str]]:
        """The pods whose terminate failed, with why they must go, once their retry is due."""
        if self._retry_at is not None and now < self._retry_at:
            return []
        return list(self._unconfirmed.items())

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Pods whose terminate has not succeeded: each still runs, bills and holds a slot."""
        return frozenset(self._unconfirmed)

    def deferral(self, now: datetime) -> str | None:
        """Why the spawns of a batch must wait, if they must, once its terminations ran."""
        if self._unconfirmed:
            # A pod whose terminate failed still runs and bills: the slot it holds is not
            # free yet. The next reconcile counts it (Limits.unconfirmed_pods) and retries.
            return f"{len(self._unconfirmed)} pod(s) not yet terminated"
        pause = self._pause_at(now)
        if pause is not None:
            # Paused by what this batch found (workers whose pods never started).
            return f"spawns paused: {pause.reason}"
        return None

    @property
    def start_failures(self) -> int:
        return self._breaker.failures

    @property
    def breaker(self) -> StartBreaker:
        return self._breaker

    def restore(self, breaker: StartBreaker) -> None:
        """Carry on from the breaker a previous leader left (read from the database)."""
        self._breaker = breaker

    @property
    def price_is_fixed(self) -> bool:
        return self._fixed_price > 0

    # --- outcomes it takes ---------------------------------------------------------------
    def price_seen(self, catalog: float | None, seen_max: float) -> None:
        """A new worker costs the fixed price, else the larger of the provider's catalog
        price and the dearest live worker's."""
        if self.price_is_fixed:
            self.expected_price = self._fixed_price
        else:
            self.expected_price = max(catalog or 0.0, seen_max)

    def spawned(self) -> None:
        """A create succeeded: the capacity backoff starts over, the provider's pause ends."""
        self._capacity.reset()
        self._pause = None

    def spawn_failed(
        self, failure: SpawnFailure, detail: str, now: datetime, *, retry_after: float = 0.0
    ) -> Pause:
        """A create failed: pause spawns. Returns the pause this failure asked for (a pause
        already in force that ends later is kept).

        ``retry_after`` is when the provider says it can be asked again: after a rate limit
        (at least 1 s), and after a rejected request the moment its first candidate may be
        tried again (at most REJECTED_PAUSE_SEC; 0 = that long)."""
        match failure:
            case SpawnFailure.INSUFFICIENT_BALANCE:
                seconds = BALANCE_PAUSE_SEC
            case SpawnFailure.RATE_LIMITED:
                seconds = max(retry_after, 1.0)
            case SpawnFailure.NO_CAPACITY | SpawnFailure.UNCERTAIN:
                seconds = self._capacity.failed()
            case SpawnFailure.REJECTED:
                seconds = REJECTED_PAUSE_SEC
                if retry_after > 0:
                    seconds = min(max(retry_after, 1.0), REJECTED_PAUSE_SEC)
        if failure is SpawnFailure.UNCERTAIN:
            reason = f"create failed: {detail}"
        else:
            reason = f"{failure}: {detail}"
        account = failure in (SpawnFailure.INSUFFICIENT_BALANCE, SpawnFailure.RATE_LIMITED)
        pause = Pause(now + timedelta(seconds=seconds), reason, own=not account)
        if self._pause is None or pause.until > self._pause.until:
            self._pause = pause
        return pause

    def start_failed(self, reason: str, now: datetime) -> Pause | None:
        """A worker ended before its pod sent a first heartbeat. From the third in a row,
        pause for about as long as a start may take, doubling up to an hour; after it the
        policy sends one probe pod at a time until a worker starts (see ``observe``).
        Returns the pause this failure asked for, if any."""
        failures = self._breaker.failures + 1
        pause, asked = self._breaker.pause, None
        if failures >= START_FAILURES_BEFORE_PROBING:
            extra = failures - START_FAILURES_BEFORE_PROBING
            seconds = doubling(self._start_pause_base, extra + 1, MAX_START_PAUSE_SEC)
            asked = Pause(
                now + timedelta(seconds=seconds),
                f"{START_FAILURE_REASON} ({failures} in a row, last: {reason}); check "
                f"RUNPOD_CONTAINER_IMAGE, WORKER_DATABASE_URL and the pods' logs",
            )
            if pause is None or asked.until > pause.until:
                pause = asked
        self._breaker = StartBreaker(failures, now, pause)
        return asked

    def observe(self, workers: Iterable[WorkerState]) -> str | None:
        """A pod of ours whose worker started after the last start failure: pods start
        again, the breaker resets. Returns that worker's id (None: nothing changed). A
        self-registered worker (no pod of ours) says nothing about the pods."""
        last = self._breaker.last_failure_at
        if not self._breaker.failures or last is None:
            return None
        started = next(
            (
                w.id
                for w in workers
                if w.managed and w.activated_at is not None and w.activated_at > last
            ),
            None,
        )
        if started is not None:
            self._breaker = StartBreaker()
        return started

    def terminate_failed(self, pod_id: str, reason: str, now: datetime) -> float:
        """A terminate failed: the pod still runs. Returns the seconds until the retry of
        every such pod (1 s doubling to 60 s while any remains)."""
        self._unconfirmed[pod_id] = reason
        delay = self._retry.failed()
        self._retry_at = now + timedelta(seconds=delay)
        return delay

    def terminated(self, pod_id: str) -> None:
        """A terminate succeeded; once no pod is left unconfirmed the retry backoff resets."""
        self._unconfirmed.pop(pod_id, None)
        if not self._unconfirmed:
            self._retry.reset()
            self._retry_at = None
