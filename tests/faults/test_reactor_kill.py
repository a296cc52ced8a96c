"""Scenario 1: the reactor SIGKILLed during a burst and restarted, several times.

Each kill lands somewhere different: inside a create (the pod exists, its row does not
know it yet), while workers are busy, and just after a burst was queued (its NOTIFY
unanswered). Tasks are also queued while no reactor runs at all. The restarted reactor
must adopt the pod it never heard back about, pick up every task, and spend nothing
beyond the caps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.faults.reactors import ReactorProcess
from tests.faults.rig import FaultRig


async def _restart(rig: FaultRig) -> ReactorProcess:
    reactor = rig.start_reactor()
    await reactor.wait_for("leader_elected")
    return reactor


async def test_reactor_killed_mid_burst_and_restarted_several_times(
    rig: FaultRig, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=3, MAX_HOURLY_SPEND_USD=2.5)
    reactor = await _restart(rig)
    try:
        # Kill 1: inside the create call, before the provider answers.
        killed_inside: list[str] = []
        rig.on_next_create(lambda pod: (reactor.kill(), killed_inside.append(pod.name)))
        await rig.insert(12, seconds=0.3)
        await rig.until(lambda: killed_inside, timeout=10, what="a create to kill inside")
        rig.faults["reactor SIGKILL inside a create"] += 1
        await rig.insert(4, seconds=0.3)  # queued while no reactor runs

        # Kill 2: while the workers are busy with the burst.
        reactor = await _restart(rig)
        await rig.until(
            lambda: sum(e.ended for runs in rig.ledger.executions().values() for e in runs) >= 4,
            timeout=20,
            what="4 tasks processed",
        )
        reactor.kill()
        rig.faults["reactor SIGKILL while workers are busy"] += 1

        # Kill 3: right after a new burst is queued, before the reactor reacts.
        reactor = await _restart(rig)
        await rig.insert(8, seconds=0.3)
        reactor.kill()
        rig.faults["reactor SIGKILL just after a burst"] += 1

        reactor = await _restart(rig)
        await rig.settle(timeout=60)
        [orphan] = killed_inside
        row = await rig.fetch("SELECT pod_id, status FROM workers WHERE id = $1", orphan)
        made = next(p for p in rig.runpod.created if p.name == orphan)
        assert row and row[0]["pod_id"] == made.id, (
            "the pod created as its reactor died was adopted by name"
        )
        await rig.drain_to_zero()
        assert await reactor.stop() == 0, reactor.log_text()[-2000:]
    finally:
        await rig.reactors.stop_all()
    record_figures(await rig.verify())
