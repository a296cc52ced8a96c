"""The executor against a real Postgres and the fake Runpod v2 server over real HTTP: the
order it carries actions out in, and what it reports to the spawn gate (deferral,
capacity backoff, the start-failure breaker and its row in the database)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from reactor.db.pool import GuardedPool, create_pool
from reactor.domain.actions import Cause, Retire, Spawn
from reactor.domain.model import WorkerStatus
from reactor.domain.pools import Pools
from reactor.engine.executor import Executor, run_owned
from reactor.engine.metrics import Metrics
from reactor.engine.service import Reactor
from reactor.engine.state import ReactorState
from reactor.ops.observe import fresh_state
from reactor.ops.status import build_status
from reactor.pools_file import parse_pools
from reactor.providers.runpod import RunpodProvider
from reactor.settings import Settings
from tests.db.support import add_worker
from tests.engine.harness import insert_tasks, runpod_settings
from tests.fakes.runpod_v2 import FakePod, FakeRunpod, run_fake_runpod
from tests.metrics import metric_value
from tests.providers.conftest import FakeClock


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod() as server:
        yield server


@pytest.fixture
def settings(db_dsn: str, runpod: FakeRunpod) -> Settings:
    return runpod_settings(db_dsn, runpod, SPAWNING_TIMEOUT_SEC=300, SPAWN_FAILURE_BACKOFF_SEC=30)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[GuardedPool]:
    made = await create_pool(db_dsn)
    yield made
    await made.close()


@pytest.fixture
def provider_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def executor(
    settings: Settings, pool: GuardedPool, provider_clock: FakeClock
) -> AsyncIterator[Executor]:
    provider = RunpodProvider(settings=settings, clock=provider_clock, retry_base_sec=0.01)
    yield Executor(
        pool=pool, provider=provider, settings=settings, metrics=Metrics(), state=ReactorState()
    )
    await provider.close()


async def db_now(conn: asyncpg.Connection) -> datetime:
    moment: datetime = await conn.fetchval("SELECT now()")
    return moment


async def worker_with_pod(conn: asyncpg.Connection, runpod: FakeRunpod) -> FakePod:
    pod = runpod.add_fleet_pod()
    await add_worker(conn, pod.name, "active", pod_id=pod.id)
    return pod


def dead(pod: FakePod) -> Retire:
    return Retire(
        pod.name, pod.id, reason="heartbeat stale", status=WorkerStatus.ERROR, cause=Cause.HEARTBEAT
    )


def never_started(worker_id: str) -> Retire:
    return Retire(
        worker_id,
        None,
        reason="no heartbeat 300s after spawn",
        status=WorkerStatus.ERROR,
        cause=Cause.SPAWN_TIMEOUT,
        start_failed=True,
    )


async def test_the_pod_that_goes_is_gone_before_a_new_one_is_created(
    conn: asyncpg.Connection, runpod: FakeRunpod, executor: Executor
) -> None:
    old = await worker_with_pod(conn, runpod)
    runpod.faults.delay(0.5, method="DELETE")  # a slow answer: a create must wait for it
    deletes_answered: list[list[int | None]] = []
    runpod.on_create = lambda _pod: deletes_answered.append(
        [r.status for r in runpod.calls("DELETE")]
    )
    applied = await executor.apply(
        [Spawn("replacement", cause=Cause.SCALE_UP), dead(old)], await db_now(conn)
    )
    assert [(r.kind, r.outcome) for r in applied.records] == [("retire", "ok"), ("spawn", "ok")]
    assert deletes_answered == [[204]], "the create went out before the terminate was answered"
    assert applied.first_action_at is not None and not applied.slot_freed


async def test_spawns_wait_while_a_terminate_is_unconfirmed_and_go_once_it_is(
    conn: asyncpg.Connection, runpod: FakeRunpod, executor: Executor
) -> None:
    old = await worker_with_pod(conn, runpod)
    runpod.faults.fail_next(None, status=500, method="DELETE")
    now = await db_now(conn)
    applied = await executor.apply([dead(old), Spawn("replacement", cause=Cause.SCALE_UP)], now)
    assert [(r.kind, r.outcome) for r in applied.records] == [
        ("retire", "error"),
        ("spawn", "deferred"),
    ]
    assert applied.records[1].detail == "1 pod(s) not yet terminated"
    assert runpod.create_calls == []
    gate = executor.gate
    assert gate.unconfirmed == {old.id}
    assert gate.limits(now).terminate_retry_at == now + timedelta(seconds=1)
    assert gate.terminations_due(now) == []

    runpod.faults.clear()
    later = now + timedelta(seconds=1)
    retried = await executor.apply([], later)
    assert [(r.kind, r.outcome, r.pod_id) for r in retried.records] == [
        ("terminate_pod", "ok", old.id)
    ]
    assert retried.slot_freed and gate.unconfirmed == frozenset()
    assert runpod.status_of(old.id) == "TERMINATED"
    spawned = await executor.apply([Spawn("replacement", cause=Cause.SCALE_UP)], later)
    assert [r.outcome for r in spawned.records] == ["ok"] and len(runpod.create_calls) == 1


async def test_no_capacity_backs_spawns_off_doubling_until_a_create_succeeds(
    conn: asyncpg.Connection, runpod: FakeRunpod, executor: Executor, provider_clock: FakeClock
) -> None:
    runpod.faults.capacity_errors = 1
    now = await db_now(conn)
    [record] = (await executor.apply([Spawn("demand", cause=Cause.SCALE_UP)], now)).records
    assert record.outcome == "no_capacity"
    limits = executor.gate.limits(now)
    assert limits.spawn_blocked_until == now + timedelta(seconds=30)
    assert (limits.spawn_blocked_reason or "").startswith("no_capacity: ")
    row = await conn.fetchrow(
        "SELECT status, error_reason FROM workers WHERE id = $1", record.worker_id
    )
    assert row["status"] == "error" and row["error_reason"].startswith(
        "create failed (no_capacity)"
    )
    assert metric_value(executor.metrics, "gpu_reactor_spawns_total", outcome="no_capacity") == 1

    # Decided while paused: the batch's spawn waits.
    [waited] = (
        await executor.apply([Spawn("demand", cause=Cause.SCALE_UP)], now + timedelta(seconds=10))
    ).records
    assert (waited.outcome, waited.detail) == (
        "deferred",
        f"spawns paused: {limits.spawn_blocked_reason}",
    )
    # The pause is over but the provider still backs its only candidate off: twice as long.
    after = now + timedelta(seconds=30)
    [again] = (await executor.apply([Spawn("demand", cause=Cause.SCALE_UP)], after)).records
    assert again.outcome == "no_capacity" and len(runpod.create_calls) == 1
    assert executor.gate.limits(after).spawn_blocked_until == after + timedelta(seconds=60)

    provider_clock.advance(31)  # the candidate's own backoff is over
    done = after + timedelta(seconds=60)
    [ok] = (await executor.apply([Spawn("demand", cause=Cause.SCALE_UP)], done)).records
    assert ok.outcome == "ok" and executor.gate.limits(done).spawn_blocked_until is None
    runpod.faults.capacity_errors = 1  # a success reset the backoff: 30 s again
    provider_clock.advance(31)
    await executor.apply([Spawn("demand", cause=Cause.SCALE_UP)], done)
    assert executor.gate.limits(done).spawn_blocked_until == done + timedelta(seconds=30)


async def test_three_start_failures_pause_spawns_and_the_count_is_written_down(
    conn: asyncpg.Connection, runpod: FakeRunpod, executor: Executor
) -> None:
    for i in range(3):
        await add_worker(conn, f"gpu-reactor-dud{i}", "spawning")
    now = await db_now(conn)
    actions = [never_started(f"gpu-reactor-dud{i}") for i in range(2)]
    await executor.apply(actions, now)
    assert (
        executor.gate.start_failures == 2 and executor.gate.limits(now).spawn_blocked_until is None
    )
    applied = await executor.apply(
        [never_started("gpu-reactor-dud2"), Spawn("demand", cause=Cause.SCALE_UP)], now
    )
    assert applied.records[-1].outcome == "deferred"
    assert applied.records[-1].detail.startswith("spawns paused: pods do not start (3 in a row")
    assert executor.gate.limits(now).spawn_blocked_until == now + timedelta(seconds=300)
    assert runpod.create_calls == []
    row = await conn.fetchrow("SELECT * FROM gpu_reactor.spawn_breaker")
    assert row["fleet"] == "gpu-reactor" and row["start_failures"] == 3
    assert row["last_start_failure_at"] == now
    assert row["paused_until"] == now + timedelta(seconds=300)
    assert row["pause_reason"].startswith("pods do not start (3 in a row")


async def overdue_workers(conn: asyncpg.Connection, *ids: str) -> None:
    for worker_id in ids:
        await add_worker(
            conn, worker_id, "spawning", created_at=await db_now(conn) - timedelta(minutes=10)
        )


async def test_a_new_leader_carries_on_counting_start_failures(
    conn: asyncpg.Connection, runpod: FakeRunpod, db_dsn: str
) -> None:
    settings = runpod_settings(db_dsn, runpod, SPAWNING_TIMEOUT_SEC=60, SWEEP_INTERVAL_SEC=120)
    first = Reactor(settings)
    await first.open()
    try:
        await overdue_workers(conn, "gpu-reactor-dud1", "gpu-reactor-dud2")
        result = await first.reconcile(full=False)
        assert [a.kind for a in result.actions] == ["retire", "retire"]
        assert result.limits.start_failures == 2 and result.limits.spawn_blocked_until is None
    finally:
        await first.close()

    second = Reactor(settings)  # the next leader, on the same database
    await second.open()
    try:
        await overdue_workers(conn, "gpu-reactor-dud3")
        await insert_tasks(conn, 1)
        result = await second.reconcile(full=False)
        assert result.limits.start_failures == 3
        assert (result.limits.spawn_blocked_reason or "").startswith(
            "pods do not start (3 in a row"
        )
        assert [(a.kind, a.outcome) for a in result.actions] == [
            ("retire", "ok"),
            ("spawn", "deferred"),
        ]
        assert runpod.create_calls == []
        assert metric_value(second.metrics, "gpu_reactor_worker_start_failures") == 3
        assert metric_value(second.metrics, "gpu_reactor_spawn_blocked") == 1

        # `gpu-reactor status` reads the same from the database.
        state, _ = await fresh_state(conn, settings)
        budget = build_status(state, settings).budget
        assert budget.worker_start_failures == 3
        assert (budget.spawn_blocked_reason or "").startswith("pods do not start (3 in a row")

        # A new term reads the row again (here: another leader saw a pod start meanwhile).
        await conn.execute(
            "UPDATE gpu_reactor.spawn_breaker SET start_failures = 0, paused_until = NULL"
        )
        second.start_term()
        result = await second.reconcile(full=False)
        assert result.limits.start_failures == 0 and result.limits.spawn_blocked_until is None
        assert [(a.kind, a.outcome) for a in result.actions] == [("spawn", "ok")]
    finally:
        await second.close()


async def test_a_failing_action_cancels_and_awaits_its_siblings() -> None:
    cancelled: list[str] = []

    async def hangs() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("hangs")
            raise
        return "never"

    async def fails() -> str:
        await asyncio.sleep(0)  # let the sibling start first
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # the error itself, not a group
        await run_owned([hangs(), fails()])
    assert cancelled == ["hangs"]
    assert await run_owned([fails_not(1), fails_not(2)]) == [1, 2]


async def fails_not(value: int) -> int:
    return value


async def test_every_candidate_rejecting_the_request_stops_spawning_with_runpods_reason(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    # Every candidate's data center is not the volume's: a cross-field 400, not capacity.
    async with run_fake_runpod(network_volumes={"vol-1": "EU-RO-1"}) as server:
        settings = runpod_settings(
            db_dsn,
            server,
            RUNPOD_GPU_TYPES="NVIDIA GeForce RTX 4090,NVIDIA L4",
            RUNPOD_DATA_CENTERS="US-TX-3",
            RUNPOD_NETWORK_VOLUME_ID="vol-1",
        )
        reactor = Reactor(settings)
        await reactor.open()
        try:
            await insert_tasks(conn, 1)
            result = await reactor.reconcile(full=False)

            [spawn] = result.actions
            assert (spawn.kind, spawn.outcome) == ("spawn", "rejected")
            reason = result.limits.spawn_blocked_reason or ""
            assert reason.startswith("rejected: Runpod rejected the create on every candidate (2)")
            assert "Network volume vol-1 is in EU-RO-1" in reason
            until = result.limits.spawn_blocked_until
            assert until is not None
            # until the first candidate may be tried again: ten minutes, not the 30 s backoff
            paused = (until - result.snapshot.now).total_seconds()
            assert 590 < paused <= 600
            assert build_status(reactor.state, settings).budget.spawn_blocked_reason == reason
            row = await conn.fetchrow(
                "SELECT status, error_reason FROM workers WHERE id = $1", spawn.worker_id
            )
            assert row["status"] == "error"
            assert row["error_reason"].startswith("create failed (rejected): Runpod rejected")
            requests = "gpu_reactor_provider_requests_total"
            assert (
                metric_value(reactor.metrics, requests, operation="create", outcome="rejected") == 2
            )
            assert (
                metric_value(reactor.metrics, "gpu_reactor_spawns_total", outcome="rejected") == 1
            )

            again = await reactor.reconcile(full=False)  # paused: nothing is sent
            assert again.actions == [] and len(server.create_calls) == 2
        finally:
            await reactor.close()


def pools_executor(
    pool: GuardedPool, provider: RunpodProvider, settings: Settings, pools: Pools
) -> Executor:
    """An executor over GPU pools, on the test's database pool and provider."""
    return Executor(
        pool=pool,
        provider=provider,
        settings=settings,
        metrics=Metrics(),
        state=ReactorState(),
        pools=pools,
    )


def two_pools(settings: Settings) -> Pools:
    tables = {
        "big": {"runpod_gpu_types": ["NVIDIA H100 80GB HBM3"], "task_types": ["wan_*"]},
        "small": {"runpod_gpu_types": ["NVIDIA GeForce RTX 4090"], "task_types": ["*"]},
    }
    return parse_pools({"pools": tables}, settings, "pools.toml")


async def test_each_pool_has_its_own_gate_pods_and_breaker_row(
    conn: asyncpg.Connection,
    runpod: FakeRunpod,
    settings: Settings,
    pool: GuardedPool,
    provider_clock: FakeClock,
) -> None:
    pools = two_pools(settings)
    provider = RunpodProvider(settings=settings, clock=provider_clock, retry_base_sec=0.01)
    executor = pools_executor(pool, provider, settings, pools)
    try:
        runpod.faults.no_capacity_gpus.add("NVIDIA H100 80GB HBM3")
        now = await db_now(conn)
        spawns = [
            Spawn("demand", Cause.SCALE_UP, pool="big"),
            Spawn("demand", Cause.SCALE_UP, pool="small"),
        ]
        records = (await executor.apply(spawns, now)).records
        assert sorted(r.outcome for r in records) == ["no_capacity", "ok"]
        bodies = {c.body["gpu"]["id"]: c.body for c in runpod.create_calls}
        assert bodies["NVIDIA GeForce RTX 4090"]["env"]["GPU_REACTOR_POOL"] == "small"
        assert bodies["NVIDIA GeForce RTX 4090"]["env"]["WORKER_TASK_TYPES"] == "*"
        limits = executor.limits(now)
        assert limits["big"].spawn_blocked_until == now + timedelta(seconds=30)
        assert limits["big"].pool_unavailable
        assert limits["small"].spawn_blocked_until is None, "big's trouble does not stop small"
        # While big is paused its spawns wait; small's go.
        later = now + timedelta(seconds=1)
        records = (await executor.apply(spawns, later)).records
        assert {r.outcome for r in records} == {"deferred", "ok"}
        rows = await conn.fetch("SELECT pool, gpu_type FROM workers WHERE status = 'spawning'")
        assert {(r["pool"], r["gpu_type"]) for r in rows} == {("small", "NVIDIA GeForce RTX 4090")}

        # Start failures count per pool, each in its own breaker row.
        for i in range(3):
            await add_worker(conn, f"gpu-reactor-dud{i}", "spawning")
        duds = [
            dataclasses.replace(never_started(f"gpu-reactor-dud{i}"), pool="small")
            for i in range(3)
        ]
        await executor.apply(duds, later)
        assert executor.gates["small"].start_failures == 3
        assert executor.gates["big"].start_failures == 0
        rows = await conn.fetch("SELECT fleet, start_failures FROM gpu_reactor.spawn_breaker")
        assert {r["fleet"]: r["start_failures"] for r in rows} == {"gpu-reactor/small": 3}
        # A new leader loads each pool's own count.
        again = pools_executor(pool, provider, settings, pools)
        await again.load_breaker()
        assert (again.gates["big"].start_failures, again.gates["small"].start_failures) == (0, 3)
    finally:
        await provider.close()


async def test_a_reload_that_puts_another_pool_first_keeps_each_pools_breaker(
    conn: asyncpg.Connection, runpod: FakeRunpod, settings: Settings, pool: GuardedPool
) -> None:
    """The first pool's breaker row is the fleet's (as before pools): after a reload puts
    another pool first, each pool's count is written under its new key, so a new leader
    (a failover, a restart) does not hand the first pool's pause to the other."""
    pools = two_pools(settings)
    swapped = Pools(tuple(reversed(pools.pools)), settings, source="pools.toml")
    provider = RunpodProvider(settings=settings, retry_base_sec=0.01)

    def executor_for(these: Pools) -> Executor:
        return pools_executor(pool, provider, settings, these)

    try:
        executor = executor_for(pools)  # big first
        now = await db_now(conn)
        for i in range(3):
            await add_worker(conn, f"gpu-reactor-dud{i}", "spawning")
        duds = [
            dataclasses.replace(never_started(f"gpu-reactor-dud{i}"), pool="big") for i in range(3)
        ]
        await executor.apply(duds, now)
        assert executor.gates["big"].start_failures == 3
        executor.set_pools(swapped)  # the reload: small first
        await executor.apply([], now)
        again = executor_for(swapped)
        await again.load_breaker()
        assert (again.gates["big"].start_failures, again.gates["small"].start_failures) == (3, 0)
    finally:
        await provider.close()
