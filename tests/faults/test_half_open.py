"""Scenario 4: the LISTEN connection goes half-open.

The reactor reaches Postgres through a loopback proxy (proxy.py). The proxy stops
forwarding on the listener's connection without closing it: no error, no EOF, the
NOTIFYs simply stop arriving. A task queued right then rings into the void. The probe
must notice within LISTENER_CHECK_INTERVAL_SEC x 2, the listener reconnect (counted in
the metrics), and the full reconcile after the reconnect act on the task: nothing else
would wake the reactor (no workers, the sweep is minutes away).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.faults.proxy import HalfOpenProxy
from tests.faults.rig import FaultRig
from tests.metrics import metric_value

LISTENER = b"gpu-reactor-listener"
DETECTION_LIMIT_SEC = 15.0


async def test_half_open_listener_is_detected_and_nothing_is_missed(
    rig: FaultRig, db_dsn: str, record_figures: Callable[[dict[str, Any]], None]
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=2, SWEEP_INTERVAL_SEC=600, LISTENER_CHECK_INTERVAL_SEC=1)
    upstream = urlsplit(db_dsn)
    assert upstream.hostname and upstream.port
    async with HalfOpenProxy(upstream.hostname, upstream.port) as proxy:
        settings = rig.settings(DATABASE_URL=proxy.dsn(db_dsn))
        async with rig.running(settings) as reactor:
            listener = reactor.state.listener
            await rig.until(
                lambda: listener.connected and proxy.matching(LISTENER),
                timeout=10,
                what="the listener connected through the proxy",
            )
            # Quiet first: a sweep event, then no wake-up pending and a reconcile since it.
            await rig.fetch("""SELECT pg_notify('gpu_reactor', '{"event":"sweep"}')""")
            await rig.until(
                lambda: (
                    listener.last_event_at is not None
                    and not reactor._dirty.is_set()
                    and (reactor.state.last_reconcile_at or 0) > listener.last_event_at
                ),
                timeout=10,
                what="the reactor to be idle",
            )
            reconnects = metric_value(reactor.metrics, "gpu_reactor_listener_reconnects_total")
            assert len(proxy.freeze(LISTENER)) == 1
            frozen_at = time.time()
            rig.faults["listener connection half-open"] += 1
            await rig.insert(3, seconds=0.2)

            await rig.until(
                lambda: listener.reconnects > 0 and listener.connected,
                timeout=DETECTION_LIMIT_SEC,
                what="the listener to reconnect",
            )
            assert listener.since is not None
            detected_in = listener.since - frozen_at
            assert detected_in < DETECTION_LIMIT_SEC
            assert (
                metric_value(reactor.metrics, "gpu_reactor_listener_reconnects_total")
                == reconnects + 1
            )
            assert metric_value(reactor.metrics, "gpu_reactor_listener_up") == 1
            assert listener.last_error == "probe not received"

            call = await rig.runpod.wait_for_create(timeout=10)
            created_at = call.time + (time.time() - time.monotonic())
            assert created_at >= listener.since - 0.05, (
                "a pod was created before the reconnect: the freeze did not hold"
            )
            await rig.settle(timeout=30)
            await rig.drain_to_zero()
            assert len(proxy.matching(LISTENER)) == 2
    figures = await rig.verify()
    figures["listener_detection_sec"] = round(detected_in, 2)
    record_figures(figures)


# The server's side of a reactor connection dies with its TCP keepalive: the reactor asks
# for tcp_keepalives_idle=5, interval=2, count=3 on its lock and LISTEN connections.
SERVER_GIVES_UP_SEC = 5 + 2 * 3
PARTITION_LIMIT_SEC = 20.0


async def test_a_partition_of_every_reactor_connection_is_survived(
    rig: FaultRig, db_dsn: str
) -> None:
    rig.configure(MAX_ACTIVE_GPUS=2, SWEEP_INTERVAL_SEC=600, LISTENER_CHECK_INTERVAL_SEC=1)
    upstream = urlsplit(db_dsn)
    assert upstream.hostname and upstream.port
    async with (
        HalfOpenProxy(upstream.hostname, upstream.port) as proxy,
        rig.running(rig.settings(DATABASE_URL=proxy.dsn(db_dsn))) as reactor,
    ):
        try:
            await rig.until(
                lambda: reactor.state.listener.connected,
                timeout=10,
                what="the listener connected",
            )
            frozen = proxy.freeze(b"gpu-reactor", server_gives_up_after=SERVER_GIVES_UP_SEC)
            assert len(frozen) >= 3  # the lock, the LISTEN and the pooled connections
            await rig.insert(2, seconds=0.2)
            await rig.runpod.wait_for_create(timeout=PARTITION_LIMIT_SEC)
            await rig.settle(timeout=30)
            await rig.drain_to_zero()
        finally:
            await proxy.close()  # a reactor stuck on a frozen connection can then stop
    await rig.verify()
