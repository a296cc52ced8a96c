"""Every background task is owned: a leadership term ends its own, and the shutdown
ladder (stop -> grace -> cancel -> hard deadline) ends the service."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

import reactor.engine.service
from reactor.engine.supervision import Term, run_until_stopped
from tests.engine.harness import running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.util import wait_until

KILL_LEADER = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name = 'gpu-reactor-leader' AND datname = current_database()"
)


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod() as server:
        yield server


async def test_a_drain_check_in_flight_ends_with_the_term_that_heard_it(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod, monkeypatch: pytest.MonkeyPatch
) -> None:
    checking = asyncio.Event()

    async def never_answers(pool: object, sender_pid: int | None) -> str | None:
        checking.set()  # a sender check stuck on its query, say
        await asyncio.Event().wait()
        return None

    monkeypatch.setattr(reactor.engine.service, "drain_refusal", never_answers)
    async with running(runpod_settings(db_dsn, runpod)) as service:
        listener = service.state.listener
        await wait_until(lambda: listener.connected, timeout=15, what="the listener")
        await conn.execute("""NOTIFY gpu_reactor, '{"event":"drain","worker_id":"w-1"}'""")
        await wait_until(checking.is_set, timeout=15, what="a drain check in flight")
        [check] = [t for t in asyncio.all_tasks() if t.get_name() == "drain-check-w-1"]
        assert await conn.fetchval(KILL_LEADER) == 1
        await wait_until(check.done, timeout=15, what="the check to end with its term")
        assert check.cancelled()
        await wait_until(
            lambda: service.state.role == "leader", timeout=30, what="the reactor leads again"
        )
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("drain-check")] == []


# --- Term: a term's tasks end with it ------------------------------------------------------


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_term_cancels_its_running_tasks_when_it_ends_and_starts_none_after() -> None:
    async with asyncio.TaskGroup() as group:
        term = Term(group)
        done = term.start(asyncio.sleep(0), "quick")
        running = [term.start(forever(), f"forever-{i}") for i in range(2)]
        assert done is not None and all(running)
        await done
        term.end()
        late = forever()
        assert term.start(late, "late") is None
        assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED  # never "not awaited"
    assert all(t is not None and t.cancelled() for t in running)
    assert not done.cancelled()


async def test_a_failing_task_ends_its_term_and_the_failure_surfaces() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(ExceptionGroup) as raised:
        async with asyncio.TaskGroup() as group:
            term = Term(group)
            sibling = term.start(forever(), "sibling")
            term.start(fails(), "fails")
            await forever()
    assert raised.group_contains(RuntimeError, match="boom")  # type: ignore[attr-defined]
    assert sibling is not None and sibling.cancelled()


# --- the shutdown ladder -------------------------------------------------------------------


class Service:
    """A root coroutine that stops on ``stop``, or holds on as long as told to."""

    def __init__(self, *, ignore_stop: bool = False, ignore_cancel: bool = False) -> None:
        self.stop = asyncio.Event()
        self.release = asyncio.Event()
        self.ignore_stop, self.ignore_cancel = ignore_stop, ignore_cancel
        self.cancelled = False

    async def run(self) -> None:
        try:
            await (forever() if self.ignore_stop else self.stop.wait())
        except asyncio.CancelledError:
            self.cancelled = True
            if self.ignore_cancel:
                await self.release.wait()
            raise


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reactor.engine.supervision"]


async def test_a_service_that_stops_within_the_grace_is_not_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    service = Service()
    service.stop.set()
    assert await run_until_stopped(service.run(), service.stop, name="svc", grace=60) is True
    assert not service.cancelled
    assert "stop_grace_passed" not in events(caplog)


async def test_a_service_past_its_grace_is_cancelled_and_unwinds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    service = Service(ignore_stop=True)
    service.stop.set()
    assert await run_until_stopped(service.run(), service.stop, name="svc", grace=0) is True
    assert service.cancelled
    assert events(caplog) == ["stopping", "stop_grace_passed"]


async def test_a_service_that_does_not_unwind_is_reported_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service(ignore_stop=True, ignore_cancel=True)
    service.stop.set()
    try:
        ended = await run_until_stopped(
            service.run(), service.stop, name="svc", grace=0, cancel_deadline=0.05
        )
        assert ended is False
        assert events(caplog)[-2:] == ["tasks_did_not_unwind", "task_still_running"]
        stuck = caplog.records[-1]
        assert stuck.task == "svc" and "in run" in stuck.stack  # type: ignore[attr-defined]
    finally:
        service.release.set()
        [task] = [t for t in asyncio.all_tasks() if t.get_name() == "svc"]
        await asyncio.gather(task, return_exceptions=True)


async def test_a_service_that_fails_on_its_own_raises_its_failure() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await run_until_stopped(fails(), asyncio.Event(), name="svc", grace=60)


async def test_cancelling_the_ladder_cancels_the_service() -> None:
    service = Service()
    ladder = asyncio.create_task(
        run_until_stopped(service.run(), service.stop, name="svc", grace=60)
    )
    await wait_until(lambda: any(t.get_name() == "svc" for t in asyncio.all_tasks()))
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "svc"]
    ladder.cancel()
    await asyncio.gather(ladder, task, return_exceptions=True)
    assert task.cancelled() and service.cancelled
