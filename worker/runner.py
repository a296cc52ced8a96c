"""The claim loop: one task at a time, claimed, processed, recorded through the fences.

Going idle follows the doorbell protocol of 0005_triggers.sql: after a claim comes back
empty, arm the doorbell, claim once more, and only then wait for a NOTIFY (or
POLL_INTERVAL_SEC, whichever comes first). Anything committed before the arm is seen by
that claim; anything after rings.

An outcome is written with the fenced functions and the attempt number: ``false`` means
the reactor took the task back (lease lost) and the outcome is discarded. A lost
connection while writing is retried - safe, because the write is fenced - until it
succeeds, is refused, or WORKER_RESULT_RETRY_SEC (or the grace period, once stopping)
runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from worker.db import ClaimedTask, Link, backoff_delays, describe
from worker.errors import DatabaseUnavailable
from worker.processors import Processor, Registry, describe_exception, no_processor_message
from worker.settings import Settings
from worker.state import TaskInHand, WorkerState

log = logging.getLogger(__name__)

FINAL_WRITE_SEC = 10.0  # the last write of a stopping worker gets at least this long
STOP_WAIT_SEC = 15.0  # a cancelled processor has this long to clean up (kill its program)
LOG_ERROR_CHARS = 300
REJECTED_RESULT = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)


@dataclass(frozen=True)
class Outcome:
    result_json: bytes | None = None
    error: str | None = None
    stopped: bool = False  # failed back because the worker is stopping

    @property
    def ok(self) -> bool:
        return self.error is None


def _summary(text: str) -> str:
    """An error_message on one short line, for the log."""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())[
        :LOG_ERROR_CHARS
    ]


class Runner:
    def __init__(
        self, *, link: Link, state: WorkerState, registry: Registry, settings: Settings
    ) -> None:
        self.link = link
        self.state = state
        self.registry = registry
        self.settings = settings
        self.task_types = settings.worker_task_types or None
        self.wake = asyncio.Event()
        self.abandoned = 0  # tasks failed back because the worker was stopping
        self._outage: Any = None  # backoff iterator while the database is unreachable

    def wake_up(self) -> None:
        self.wake.set()

    # --- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Claim and process tasks until the worker is draining."""
        idle = False
        while not self.state.draining.is_set():
            try:
                if idle:
                    self.wake.clear()
                    await self.link.arm()
                task = await self.link.claim(self.task_types)
            except DatabaseUnavailable as exc:
                await self._wait_out_outage(exc)
                continue
            self._outage_over()
            if task is not None:
                idle = False
                await self.handle(task)
            elif not idle:
                idle = True  # arm, then claim once more before waiting
            else:
                await self._idle_wait()

    async def _idle_wait(self) -> None:
        timeout = self.settings.poll_interval_sec * random.uniform(0.9, 1.0)
        waiters = [
            asyncio.ensure_future(self.wake.wait()),
            asyncio.ensure_future(self.state.draining.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _wait_out_outage(self, exc: DatabaseUnavailable) -> None:
        if self._outage is None:
            self._outage = backoff_delays(0.2, self.settings.worker_reconnect_max_sec)
            log.warning(
                "db_unavailable", extra={"worker_id": self.state.worker_id, "error": str(exc)}
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(next(self._outage)):
                await self.state.draining.wait()

    def _outage_over(self) -> None:
        if self._outage is not None:
            self._outage = None
            log.info("db_reconnected", extra={"worker_id": self.state.worker_id})

    # --- one task --------------------------------------------------------------------
    async def handle(self, task: ClaimedTask) -> None:
        self.state.current = TaskInHand(task.id, task.task_type, task.attempt)
        started = time.monotonic()
        log.info(
            "task_claimed",
            extra={
                "task_id": str(task.id),
                "task_type": task.task_type,
                "attempt": task.attempt,
                "max_attempts": task.max_attempts,
            },
        )
        try:
            outcome = await self.execute(task)
            await self.record(task, outcome, time.monotonic() - started)
        finally:
            self.state.current = None

    async def execute(self, task: ClaimedTask) -> Outcome:
        """Run the task's processor unless the worker is forced to stop first."""
        processor = self.registry.get(task.task_type)
        if processor is None:
            return Outcome(error=no_processor_message(task.task_type, self.state.worker_id))
        work = asyncio.create_task(self._invoke(processor, task), name=f"process-{task.id}")
        forced = asyncio.ensure_future(self.state.forced.wait())
        try:
            await asyncio.wait({work, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
            if not work.done():
                work.cancel()
        if not work.cancelled() and work.done():
            return work.result()
        await asyncio.wait({work}, timeout=STOP_WAIT_SEC)
        self.abandoned += 1
        return Outcome(error=self.state.stopped_message(), stopped=True)

    async def _invoke(self, processor: Processor, task: ClaimedTask) -> Outcome:
        limit = self.settings.task_timeout_sec
        deadline = asyncio.timeout(limit + getattr(processor, "timeout_slack", 0.0))
        try:
            async with deadline:
                result = await processor(task)
        except TimeoutError as exc:
            if deadline.expired():
                return Outcome(error=f"timed out after {limit:g}s (TASK_TIMEOUT_SEC)")
            return Outcome(error=describe_exception(exc))
        except (Exception, SystemExit) as exc:
            return Outcome(error=describe_exception(exc))
        try:
            return Outcome(result_json=orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))
        except TypeError as exc:
            return Outcome(error=f"result is not JSON-serialisable: {exc}")

    # --- recording the outcome -------------------------------------------------------
    def _write_deadline(self, since: float) -> float:
        limit = since + self.settings.worker_result_retry_sec
        if self.state.grace_deadline is not None:
            limit = min(limit, max(self.state.grace_deadline, since + FINAL_WRITE_SEC))
        return limit

    async def record(self, task: ClaimedTask, outcome: Outcome, took: float) -> None:
        since = time.monotonic()
        delays = backoff_delays(0.2, self.settings.worker_reconnect_max_sec)
        while True:
            try:
                if outcome.ok:
                    assert outcome.result_json is not None
                    accepted = await self.link.complete(task, outcome.result_json)
                else:
                    accepted = await self.link.fail(task, outcome.error or "failed")
            except DatabaseUnavailable as exc:
                remaining = self._write_deadline(since) - time.monotonic()
                if remaining <= 0:
                    log.error(
                        "outcome_not_recorded",
                        extra={
                            "task_id": str(task.id),
                            "attempt": task.attempt,
                            "outcome": "complete" if outcome.ok else "failed",
                            "error": str(exc),
                        },
                    )
                    return
                delay = min(next(delays), remaining)
                log.warning(
                    "outcome_retry",
                    extra={"task_id": str(task.id), "error": str(exc), "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                continue
            except REJECTED_RESULT as exc:
                if not outcome.ok:
                    raise
                # The result itself cannot be stored (a NUL in a string, too large): the
                # task fails with the reason instead.
                log.error(
                    "result_rejected", extra={"task_id": str(task.id), "error": describe(exc)}
                )
                outcome = Outcome(error=f"the result could not be stored: {describe(exc)}")
                continue
            except asyncpg.PostgresError as exc:
                log.error(
                    "outcome_not_recorded", extra={"task_id": str(task.id), "error": describe(exc)}
                )
                return
            self._log_recorded(task, outcome, accepted, took)
            return

    def _log_recorded(
        self, task: ClaimedTask, outcome: Outcome, accepted: bool, took: float
    ) -> None:
        fields: dict[str, Any] = {
            "task_id": str(task.id),
            "task_type": task.task_type,
            "attempt": task.attempt,
            "duration_sec": round(took, 3),
        }
        if not accepted:
            self.state.lease_lost += 1
            log.warning(
                "lease_lost", extra={**fields, "discarded": "result" if outcome.ok else "failure"}
            )
        elif outcome.ok:
            self.state.completed += 1
            log.info("task_completed", extra=fields)
        else:
            self.state.failed += 1
            requeued = task.attempt < task.max_attempts
            log.warning(
                "task_stopped" if outcome.stopped else "task_failed",
                extra={**fields, "requeued": requeued, "error": _summary(outcome.error or "")},
            )
