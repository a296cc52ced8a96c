"""`gpu-reactor run` stopping while a provider call hangs past the shutdown grace."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

import asyncpg
import pytest

import reactor.engine.service
from reactor.cli import cmd_run
from tests.engine.harness import runpod_settings
from tests.fakes import run_fake_runpod


async def test_sigterm_with_a_create_hanging_past_the_grace_exits_0_and_lets_go(
    db_dsn: str,
    conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(reactor.engine.service, "SHUTDOWN_GRACE", 0.3)
    async with run_fake_runpod() as runpod:
        runpod.faults.delay(60, method="POST", path="/pods")
        settings = runpod_settings(db_dsn, runpod, RUNPOD_REQUEST_TIMEOUT_SEC=120)
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
