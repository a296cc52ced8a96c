"""Scenario 3: Postgres restarted during a burst, twice.

Every connection of the reactor (pool, leader lock, LISTEN) and of every worker (claim,
heartbeat, LISTEN) breaks at once, tasks are mid-flight, outcomes are waiting to be
written. Both sides must reconnect on their own; tasks queued after the restart must be
seen; a worker whose heartbeat lapsed during the outage may be retired and its task
requeued, but then its late outcome must be refused, never written twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from reactor.aio import wait_event
from tests.faults.rig import FaultRig
from tests.pg import PgServer

# On Python 3.11 asyncio.wait_for swallows a cancellation that arrives as its inner
# awaitable completes (CPython gh-86296). A Postgres restart does exactly that (the lock
# connection dies as the LISTEN connection's termination sets Listener._lost), which left
# the reactor neither leading nor stoppable; reactor/aio.py uses asyncio.timeout instead.


async def test_an_interruptible_wait_never_swallows_a_cancellation() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_event(event, 10))
    await asyncio.sleep(0)  # the waiter is waiting
    event.set()
    waiter.cancel()  # in the same turn of the loop, as in lead()'s TaskGroup
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_postgres_restarted_mid_burst(
    rig: FaultRig, pg_server: PgServer, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    if not pg_server.restartable:
        pytest.skip("the test Postgres is not ours to restart")
    assert pg_server.embedded is not None
    rig.configure(MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=2.5)
    async with rig.running(rig.settings()) as reactor:
        await rig.insert(12, seconds=0.4)
        for restart in range(2):
            seen = {e.nonce for runs in rig.ledger.executions().values() for e in runs}
            await rig.until(
                lambda seen=seen: (
                    len([e for e in rig.ledger.running() if e.nonce not in seen]) >= 2
                ),
                timeout=20,
                what="workers busy with new tasks",
            )
            await rig.until(
                lambda n=restart: (
                    reactor.state.listener.reconnects >= n and reactor.state.listener.connected
                ),
                timeout=20,
                what="the reactor to listen again",
            )
            await asyncio.to_thread(pg_server.embedded.restart)
            rig.faults["postgres restart mid-burst"] += 1
            await rig.insert(6, seconds=0.4)
        await rig.settle(timeout=60)
        await rig.drain_to_zero()
        listener = reactor.state.listener
        await rig.until(
            lambda: listener.reconnects >= 2 and listener.connected,
            timeout=15,
            what="the reactor listening again after both restarts",
        )
        assert reactor.state.role == "leader"
    record_figures(await rig.verify())
