"""Scenario 2: two and three reactors on one database; the leader SIGKILLed mid-burst.

One leads, the others stand by. Each time the leader dies while pods are being made, a
standby must take over, never while the old leader could still act, and carry the burst
to the end within the caps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.faults.reactors import ReactorProcess
from tests.faults.rig import FaultRig


def _elected_at(reactor: ReactorProcess) -> list[float]:
    return [
        datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
        for e in reactor.events("leader_elected")
    ]


def _activity(rig: FaultRig) -> int:
    """Pods created plus task executions finished: grows while a leader does its job."""
    finished = sum(e.ended for runs in rig.ledger.executions().values() for e in runs)
    return len(rig.runpod.create_calls) + finished


async def _one_leader(rig: FaultRig) -> ReactorProcess:
    leaders = await rig.until(
        lambda: rig.reactors.leaders() if len(rig.reactors.leaders()) == 1 else None,
        timeout=15,
        what="exactly one leader",
    )
    return leaders[0]


@pytest.mark.parametrize("count", [2, 3])
async def test_leader_killed_mid_burst_a_standby_takes_over(
    rig: FaultRig, record_figures: Callable[[dict[str, Any]], None], count: int
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=2.5)
    reactors = [rig.start_reactor() for _ in range(count)]
    try:
        for reactor in reactors:
            await reactor.wait_for("standby")
        leader = await _one_leader(rig)
        await rig.insert(10, seconds=0.4)
        for _ in range(count - 1):
            before = _activity(rig)
            await rig.until(
                lambda n=before: _activity(rig) >= n + 2,
                timeout=15,
                what="the leader to act on the burst",
            )
            leader.kill()
            rig.faults["leader SIGKILL mid-burst"] += 1
            previous, leader = leader, await _one_leader(rig)
            assert previous.killed_at is not None
            assert max(_elected_at(leader)) + 0.002 >= previous.killed_at, (
                "a standby took over while the old leader was still alive"
            )
            await rig.insert(8, seconds=0.4)
        await rig.settle(timeout=60)
        await rig.drain_to_zero()
        terms = sorted(t for r in reactors for t in _elected_at(r))
        assert len(terms) == count, f"{len(terms)} leader terms for {count} reactors"
        codes = await rig.reactors.stop_all()
        assert set(codes.values()) == {0}, codes
    finally:
        await rig.reactors.stop_all()
    record_figures(await rig.verify())
