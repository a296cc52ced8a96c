"""The reactor end to end: real Postgres, the fake Runpod v2 server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from reactor.engine.service import Reactor
from reactor.ops.status import StatusView, build_status
from tests.engine.harness import insert_tasks, running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.metrics import metric_value
from tests.pg import PgServer
from tests.util import wait_until


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod() as server:
        yield server


def status_of(reactor: Reactor) -> StatusView:
    return build_status(reactor.state, reactor.settings)


def live_pods(runpod: FakeRunpod) -> int:
    return sum(1 for p in runpod.pods.values() if runpod.status_of(p.id) != "TERMINATED")


def sweeps(reactor: Reactor) -> float:
    return metric_value(reactor.metrics, "gpu_reactor_reconciles_total", kind="sweep")


# Timing is the wake schedule's, tested on a fake clock (tests/domain/test_wake.py). Here
# the waits are generous and the assertions are about cause and order: what woke the
# reactor, and that it acted after a deadline on the database clock, never before.
WAIT = 30.0


async def test_single_insert_on_idle_system_reaches_a_create_promptly(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    async with running(runpod_settings(db_dsn, runpod)) as reactor:
        assert runpod.create_calls == []
        swept = sweeps(reactor)
        await insert_tasks(conn, 1)
        call = await runpod.wait_for_create(timeout=WAIT)
        assert sweeps(reactor) == swept, "the insert's event must act, not the sweep timer"
        body = call.body
        assert body["name"].startswith("gpu-reactor-")
        assert body["env"]["WORKER_ID"] == body["name"]
        assert body["env"]["GPU_REACTOR_FLEET"] == "gpu-reactor"
        assert body["gpu"]["id"] == "NVIDIA GeForce RTX 4090"
        row = await wait_until(
            lambda: conn.fetchrow(
                "SELECT * FROM workers WHERE id = $1 AND pod_id IS NOT NULL", body["name"]
            ),
            what="pod recorded on the worker row",
        )
        assert row["status"] == "spawning" and float(row["cost_per_hr"]) > 0
        await wait_until(
            lambda: metric_value(reactor.metrics, "gpu_reactor_reaction_latency_seconds_sum") > 0,
            what="reaction latency observed",
        )


async def test_burst_of_10000_tasks_is_coalesced_and_capped(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    settings = runpod_settings(db_dsn, runpod, MAX_ACTIVE_GPUS=3, TASKS_PER_GPU_THRESHOLD=10)
    async with running(settings) as reactor:
        before = reactor.state.reconciles
        await insert_tasks(conn, 5000)
        for _ in range(100):  # the rest as 100 separate transactions
            await insert_tasks(conn, 50)
        await wait_until(
            lambda: reactor.state.snapshot is not None and reactor.state.snapshot.queued == 10_000,
            timeout=10,
            what="reactor saw the whole burst",
        )
        await wait_until(lambda: len(runpod.create_calls) >= 3, timeout=10, what="3 creates")
        reconciles = reactor.state.reconciles - before
        # one more reconcile after everything settled must not add pods
        await conn.execute("""NOTIFY gpu_reactor, '{"event":"sweep"}'""")
        await wait_until(
            lambda: reactor.state.reconciles > before + reconciles,
            what="a further reconcile",
        )
        assert len(runpod.create_calls) == 3
        assert live_pods(runpod) == 3
        assert reconciles <= 15, f"{reconciles} reconciles for one burst"


async def first_pod_claims_a_task_and_dies(
    conn: asyncpg.Connection, worker_dsn: str, runpod: FakeRunpod
) -> tuple[str, str]:
    """One task queued; the pod created for it starts (first heartbeat), claims the task,
    then dies: no more heartbeats. Returns its worker id and pod id."""
    await insert_tasks(conn, 1)
    first = await runpod.wait_for_create(timeout=5)
    worker_id = first.body["name"]
    pod_id = await wait_until(
        lambda: conn.fetchval("SELECT pod_id FROM workers WHERE id = $1", worker_id),
        what="pod id",
    )
    pod_conn = await asyncpg.connect(worker_dsn)
    try:  # with the token the reactor put in the pod's env, as gpu-worker does
        await pod_conn.execute(
            "SELECT set_config('gpu_reactor.worker_token', $1, false)",
            first.body["env"]["WORKER_TOKEN"],
        )
        assert (
            await pod_conn.fetchval(
                "SELECT gpu_reactor.func_update_worker_heartbeat($1, '{}')", worker_id
            )
            == "active"
        )
        claimed = await pod_conn.fetchrow(
            "SELECT * FROM gpu_reactor.func_claim_available_task($1)", worker_id
        )
        assert claimed is not None
    finally:
        await pod_conn.close()
    return worker_id, pod_id


async def test_killed_worker_is_requeued_at_its_deadline_and_replaced(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    settings = runpod_settings(
        db_dsn, runpod, MAX_ACTIVE_GPUS=1, GPU_IDLE_TIMEOUT_SEC=1.5, SWEEP_INTERVAL_SEC=120
    )
    async with running(settings) as reactor:
        worker_id, pod_id = await first_pod_claims_a_task_and_dies(conn, worker_dsn, runpod)
        swept = sweeps(reactor)
        second = await runpod.wait_for_create(timeout=WAIT, count=2)
        await runpod.wait_for_request("DELETE", f"/pods/{pod_id}", timeout=WAIT)
        row = await conn.fetchrow(
            "SELECT status, error_reason, last_heartbeat, terminated_at FROM workers WHERE id = $1",
            worker_id,
        )
        assert row["status"] == "error" and "heartbeat" in row["error_reason"]
        # Retired and replaced at its heartbeat deadline, not before, on the database clock;
        # woken by that deadline itself (the sweep is two minutes away).
        deadline = row["last_heartbeat"] + timedelta(seconds=1.5)
        assert row["terminated_at"] >= deadline
        replaced_at = await conn.fetchval(
            "SELECT created_at FROM workers WHERE id = $1", second.body["name"]
        )
        assert replaced_at >= deadline
        assert sweeps(reactor) == swept
        task = await conn.fetchrow("SELECT status, attempts, worker_id FROM tasks")
        assert task["status"] == "Queued" and task["attempts"] == 1 and task["worker_id"] is None
        assert (
            metric_value(reactor.metrics, "gpu_reactor_tasks_requeued_total", reason="heartbeat")
            == 1
        )


async def test_sweep_terminates_a_fleet_pod_made_behind_its_back_only(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    async with running(runpod_settings(db_dsn, runpod, SWEEP_INTERVAL_SEC=120)):
        stray = runpod.add_fleet_pod()
        notebook = runpod.add_pod("jupyter-notebook")
        name_only = runpod.add_pod("gpu-reactor-deadbeef")  # prefix but no env marker
        await conn.execute("""NOTIFY gpu_reactor, '{"event":"sweep"}'""")
        await runpod.wait_for_request("DELETE", f"/pods/{stray.id}", timeout=5)
        assert notebook.id in runpod.pods and name_only.id in runpod.pods
        deletes = {c.path for c in runpod.calls("DELETE")}
        assert deletes == {f"/pods/{stray.id}"}


async def test_two_reactors_never_both_act_and_the_standby_takes_over(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    settings = runpod_settings(db_dsn, runpod, MAX_ACTIVE_GPUS=2)
    async with running(settings, lead=False) as a, running(settings, lead=False) as b:
        await wait_until(
            lambda: {a.state.role, b.state.role} == {"leader", "standby"},
            what="one leader, one standby",
        )
        leader, standby = (a, b) if a.state.role == "leader" else (b, a)
        await insert_tasks(conn, 5)
        await runpod.wait_for_create(count=2)
        leader.stop_event.set()
        await asyncio.wait_for(leader.task, 10)  # type: ignore[attr-defined]
        await wait_until(
            lambda: standby.state.role == "leader" and standby.state.reconciles > 0,
            timeout=WAIT,
            what="standby takes over",
        )
        await insert_tasks(conn, 5)
        await conn.execute("""NOTIFY gpu_reactor, '{"event":"sweep"}'""")
        reconciles = standby.state.reconciles
        await wait_until(lambda: standby.state.reconciles > reconciles, what="reconcile")
        assert len(runpod.create_calls) == 2
        assert live_pods(runpod) == 2


async def test_a_listener_whose_term_ended_is_not_shown_as_connected(
    db_dsn: str, runpod: FakeRunpod
) -> None:
    async with running(runpod_settings(db_dsn, runpod)) as reactor:
        assert reactor.state.listener.connected
        assert metric_value(reactor.metrics, "gpu_reactor_listener_up") == 1
    # The term ended (here: stopped; a lost leadership ends it the same way).
    assert not reactor.state.listener.connected
    assert metric_value(reactor.metrics, "gpu_reactor_listener_up") == 0


async def test_postgres_restart_is_survived(
    pg_server: PgServer, db_dsn: str, runpod: FakeRunpod
) -> None:
    if not pg_server.restartable:
        pytest.skip("the test Postgres is not ours to restart")
    settings = runpod_settings(db_dsn, runpod)
    async with running(settings) as reactor:
        reconnects = reactor.state.listener.reconnects
        await asyncio.to_thread(pg_server.embedded.restart)  # type: ignore[union-attr]
        await wait_until(
            lambda: (
                reactor.state.listener.reconnects > reconnects
                and reactor.state.listener.connected
                and reactor.state.role == "leader"
            ),
            timeout=20,
            what="listener reconnected after restart",
        )
        conn = await asyncpg.connect(db_dsn)
        try:
            await insert_tasks(conn, 1)
            await runpod.wait_for_create(timeout=10)
        finally:
            await conn.close()


async def test_malformed_notify_payloads_are_ignored_and_counted(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    async with running(runpod_settings(db_dsn, runpod)) as reactor:
        bad = ["not json", "[]", '{"event":"explode"}', '{"event":"drain"}', "{" * 100]
        for payload in bad:
            await conn.execute("SELECT pg_notify('gpu_reactor', $1)", payload)
        await wait_until(
            lambda: metric_value(reactor.metrics, "gpu_reactor_malformed_events_total") == len(bad),
            what="malformed events counted",
        )
        await insert_tasks(conn, 1)
        await runpod.wait_for_create(timeout=5)
        assert not reactor.task.done()  # type: ignore[attr-defined]


async def test_no_replacement_while_the_dead_workers_pod_cannot_be_terminated(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    """With one GPU allowed, the replacement waits until the dead pod is really gone:
    a pod whose DELETE fails still runs and bills."""
    settings = runpod_settings(
        db_dsn, runpod, MAX_ACTIVE_GPUS=1, GPU_IDLE_TIMEOUT_SEC=1.0, SWEEP_INTERVAL_SEC=120
    )
    async with running(settings) as reactor:
        worker_id, pod_id = await first_pod_claims_a_task_and_dies(conn, worker_dsn, runpod)
        runpod.faults.fail_next(None, status=500, method="DELETE")
        # Its deadline passes: retired, task requeued, DELETE refused - and retried on a
        # timer of its own (nothing else happens to wake the reactor), still refused.
        await wait_until(
            lambda: conn.fetchval("SELECT status = 'Queued' FROM tasks"), what="the task requeued"
        )
        executor = reactor.executor
        assert executor is not None
        await wait_until(lambda: len(executor.gate.unconfirmed) == 1, what="the terminate to fail")
        tried = len(runpod.calls("DELETE", f"/pods/{pod_id}"))
        await runpod.wait_for_request("DELETE", f"/pods/{pod_id}", timeout=10, count=tried + 1)
        assert len(runpod.create_calls) == 1, "a replacement while the dead pod still runs"
        runpod.faults.clear()
        second = await runpod.wait_for_create(timeout=10, count=2)
        deleted = [
            c
            for c in runpod.calls("DELETE", f"/pods/{pod_id}")
            if c.status is not None and c.status < 300
        ]
        assert deleted and deleted[0].time < second.time, "created before the old pod was gone"


async def test_pods_that_never_start_pause_spawning_then_one_probe_until_a_worker_starts(
    db_dsn: str, worker_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    # The fake's pods run nothing: no worker ever beats, as with a broken image.
    settings = runpod_settings(
        db_dsn, runpod, MAX_ACTIVE_GPUS=3, SPAWNING_TIMEOUT_SEC=3, SWEEP_INTERVAL_SEC=120
    )
    starting_seen: list[int] = []
    reasons_seen: set[str] = set()

    async def starting() -> int:
        return await conn.fetchval("SELECT count(*) FROM workers WHERE status = 'spawning'")

    async with running(settings) as reactor:
        await insert_tasks(conn, 5)
        await runpod.wait_for_create(timeout=5, count=3)

        async def probe_sent() -> bool:
            gate = reactor.executor.gate  # type: ignore[union-attr]
            if gate.start_failures >= 3:
                starting_seen.append(await starting())
                reasons_seen.add(status_of(reactor).budget.spawn_blocked_reason or "")
            return len(runpod.create_calls) >= 4

        await wait_until(probe_sent, timeout=15, what="a probe create after 3 start failures")
        assert len(runpod.create_calls) == 4
        assert max(starting_seen) <= 1, starting_seen
        assert any(r.startswith("pods do not start (3 in a row") for r in reasons_seen)
        assert metric_value(reactor.metrics, "gpu_reactor_worker_start_failures") == 3
        errors = await conn.fetch("SELECT error_reason FROM workers WHERE status = 'error'")
        assert len(errors) == 3 and all("SPAWNING_TIMEOUT_SEC" in r[0] for r in errors)

        # The probe's worker starts: the fleet is filled at once. A worker someone started
        # by hand (no pod of the reactor's) says nothing about the pods, and changes nothing.
        probe = runpod.create_calls[3].body
        pod_conn = await asyncpg.connect(worker_dsn)
        try:
            before = reactor.state.reconciles
            assert (
                await pod_conn.fetchval(
                    "SELECT gpu_reactor.func_update_worker_heartbeat('hand-started', '{}')"
                )
                == "active"
            )
            await wait_until(lambda: reactor.state.reconciles > before, what="a reconcile")
            assert metric_value(reactor.metrics, "gpu_reactor_worker_start_failures") == 3
            await pod_conn.execute(
                "SELECT set_config('gpu_reactor.worker_token', $1, false)",
                probe["env"]["WORKER_TOKEN"],
            )
            assert (
                await pod_conn.fetchval(
                    "SELECT gpu_reactor.func_update_worker_heartbeat($1, '{}')", probe["name"]
                )
                == "active"
            )
        finally:
            await pod_conn.close()
        # Three workers wanted: the probe, the hand-started one and one more pod.
        await runpod.wait_for_create(timeout=5, count=5)
        assert metric_value(reactor.metrics, "gpu_reactor_worker_start_failures") == 0
        assert status_of(reactor).budget.spawn_blocked_reason is None


async def test_a_task_waiting_out_its_retry_delay_gets_a_worker_when_due(
    db_dsn: str, conn: asyncpg.Connection, runpod: FakeRunpod
) -> None:
    async with running(runpod_settings(db_dsn, runpod, SWEEP_INTERVAL_SEC=120)) as reactor:
        retry_at = await conn.fetchval(
            "INSERT INTO tasks (task_type, attempts, retry_at) "
            "VALUES ('echo', 1, now() + interval '2 seconds') RETURNING retry_at"
        )
        # The insert is heard, and no GPU is started for a task that cannot be claimed yet ...
        await wait_until(
            lambda: reactor.state.snapshot and reactor.state.snapshot.waiting == 1,
            what="a reconcile that sees the waiting task",
        )
        assert runpod.create_calls == []
        swept = sweeps(reactor)
        # ... until it is due: the reactor wakes for it, with no event and no sweep.
        create = await runpod.wait_for_create(timeout=WAIT)
        created_at = await conn.fetchval(
            "SELECT created_at FROM workers WHERE id = $1", create.body["name"]
        )
        assert created_at >= retry_at, "a worker started for a task not due yet"
        assert sweeps(reactor) == swept
