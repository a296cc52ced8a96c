"""The shutdown ladder: stop -> grace -> cancel -> hard deadline, with a provider call
that hangs past the grace, and one whose cancellation never unwinds."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

import asyncpg
import pytest

from reactor.cli import cmd_run
from reactor.engine.service import Reactor
from reactor.providers import make_provider
from reactor.providers.base import Pod, PodSpec, Provider
from tests.engine.harness import runpod_settings
from tests.fakes import run_fake_runpod
from tests.util import wait_until


async def test_sigterm_with_a_create_hanging_past_the_grace_exits_0_and_lets_go(
    db_dsn: str,
    conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with run_fake_runpod() as runpod:
        runpod.faults.delay(60, method="POST", path="/pods")
        settings = runpod_settings(
            db_dsn, runpod, RUNPOD_CREATE_TIMEOUT_SEC=120, REACTOR_SHUTDOWN_GRACE_SEC=0.3
        )
        run = asyncio.create_task(cmd_run(argparse.Namespace(), settings))
        try:
            await conn.execute("INSERT INTO tasks (task_type) VALUES ('echo')")
            await runpod.wait_until(lambda: runpod.create_calls, 15, "a create call in flight")
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                )
                == 1
            )
            os.kill(os.getpid(), signal.SIGTERM)  # the handler cmd_run installed sets stop
            async with asyncio.timeout(15):
                code = await run
        finally:
            run.cancel()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    assert code == 0
    assert any(r.getMessage() == "stop_grace_passed" for r in caplog.records)
    # The cancelled reactor closed its lock connection: the next leader can take over.
    assert (
        await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        == 0
    )


class CreateRefusingToUnwind:
    """A provider whose create, once cancelled, holds on until the test lets it go: the
    reactor's task does not unwind after its cancel."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.creating = asyncio.Event()
        self.release = asyncio.Event()

    async def create(self, spec: PodSpec) -> Pod:
        self.creating.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()
            raise
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_reactor_that_does_not_unwind_after_its_cancel_is_left_with_its_stacks_logged(
    db_dsn: str, conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with run_fake_runpod() as runpod:
        settings = runpod_settings(db_dsn, runpod, REACTOR_SHUTDOWN_GRACE_SEC=0)
        provider = CreateRefusingToUnwind(make_provider(settings))
        reactor = Reactor(settings, provider=provider)  # type: ignore[arg-type]
        serving = asyncio.create_task(reactor.serve(cancel_deadline=0.3), name="serve")
        try:
            await conn.execute("INSERT INTO tasks (task_type) VALUES ('echo')")
            await wait_until(provider.creating.is_set, timeout=15, what="a create in flight")
            reactor.stop_event.set()
            async with asyncio.timeout(15):
                code = await serving
            assert code == 1, "serve() must give up on a task that does not unwind"
            events = [r.getMessage() for r in caplog.records]
            assert events.index("stop_grace_passed") < events.index("tasks_did_not_unwind")
            stacks = {
                r.task: r.stack  # type: ignore[attr-defined]
                for r in caplog.records
                if r.getMessage() == "task_still_running"
            }
            assert "reactor" in stacks and "serve" not in stacks
            assert any("in create" in stack for stack in stacks.values()), stacks
        finally:
            serving.cancel()
            provider.release.set()  # now it unwinds: nothing of it may outlive the test
            stuck = [t for t in asyncio.all_tasks() if t.get_name() == "reactor"]
            async with asyncio.timeout(15):
                await asyncio.gather(*stuck, return_exceptions=True)
