"""WORKER_PROTOCOL=headless-wan2gp end to end (issue 14 §3, §4), the seed's chain included.

The real reactor runs on the migrated seed database and the fake Runpod over real HTTP;
every pod it creates is played by the stand-in Headless-Wan2GP worker (tests/seed/
standin.py), which knows only the seed's calls: it beats through
``func_worker_heartbeat_with_logs`` (status 'active' on every beat), claims through
``claim_next_task_service_role`` and completes with ``complete_task``'s UPDATE. Nothing
here waits on the clock alone: every wait is for a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from reactor.db.queries import query
from reactor.domain.model import WorkerStatus
from reactor.engine.demand import SEED_DEMAND_SQL, DemandReader
from reactor.engine.snapshot import read_snapshot
from reactor.settings import Settings
from tests.engine.harness import running, runpod_settings
from tests.fakes.runpod_v2 import FakeRunpod, run_fake_runpod
from tests.fakes.runpod_v2_pods import FakePod
from tests.seed.fixture import ALICE_PROJECT, BOB_PROJECT
from tests.seed.standin import HeadlessWorker, headless_worker
from tests.util import wait_until

WAIT = 15.0
BEAT_SEC = 0.1  # the stand-ins' heartbeat interval (the real guardian's is 20 s)
POLL_SEC = 0.05  # how often an idle stand-in asks for a task (the real worker polls too)
SERVICE_KEY = "sb_secret_service_role_key_for_tests"
ARGS = (
    "bash -c 'cd /workspace/Headless-Wan2GP && exec python worker.py --supabase-url "
    '"$SUPABASE_URL" --supabase-access-token "$SUPABASE_SERVICE_ROLE_KEY" --worker "$WORKER_ID"\''
)


@dataclass
class Fleet:
    """Plays each pod's worker: one stand-in per pod the fake Runpod creates, ended
    (killed, no last beat) when the pod is terminated. A task whose id is in ``held``
    is kept In Progress until it is taken out again."""

    dsn: str
    workers: dict[str, HeadlessWorker] = field(default_factory=dict)  # by WORKER_ID
    programs: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    claimed: dict[str, str] = field(default_factory=dict)  # task id -> last claimant
    done: dict[str, str] = field(default_factory=dict)  # task id -> who completed it
    held: set[str] = field(default_factory=set)
    failures: list[BaseException] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def on_create(self, pod: FakePod) -> None:
        worker_id = pod.env["WORKER_ID"]
        self.programs[worker_id] = asyncio.create_task(self._run(worker_id), name=worker_id)

    async def on_terminate(self, pod: FakePod) -> None:
        await self.kill(pod.env["WORKER_ID"])

    def release(self, task_id: str) -> None:
        self.held.discard(task_id)
        self._released.set()

    async def kill(self, worker_id: str) -> None:
        program = self.programs.pop(worker_id, None)
        if program is not None:
            program.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await program

    async def close(self) -> None:
        for worker_id in list(self.programs):
            await self.kill(worker_id)

    async def _run(self, worker_id: str) -> None:
        try:
            async with headless_worker(self.dsn, worker_id, heartbeat_interval=BEAT_SEC) as w:
                self.workers[worker_id] = w
                try:
                    w.start_heartbeat()
                    await self._work(w)
                finally:
                    await w.kill()  # a pod that ends sends no last beat
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by the test's teardown
            self.failures.append(exc)

    async def _work(self, w: HeadlessWorker) -> None:
        while True:
            task = await w.claim()
            if task is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.Event().wait(), POLL_SEC)
                continue
            task_id = str(task.id)
            self.claimed[task_id] = w.worker_id
            while task_id in self.held:
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), POLL_SEC)
            if await w.complete(task.id, f"https://example.test/{task_id}.mp4"):
                self.done[task_id] = w.worker_id


@pytest.fixture
async def db(migrated_seed_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The migrated seed database with an empty queue and no live seed worker: every
    worker here is one of the reactor's pods."""
    conn = await asyncpg.connect(migrated_seed_dsn)
    await conn.execute("DELETE FROM tasks WHERE status IN ('Queued', 'In Progress')")
    await conn.execute("UPDATE workers SET status = 'terminated' WHERE status = 'active'")
    yield conn
    await conn.close()


@pytest.fixture
async def fleet(migrated_seed_dsn: str) -> AsyncIterator[Fleet]:
    players = Fleet(migrated_seed_dsn)
    yield players
    await players.close()
    assert players.failures == []


@pytest.fixture
async def runpod(fleet: Fleet) -> AsyncIterator[FakeRunpod]:
    async with run_fake_runpod(on_create=fleet.on_create, on_terminate=fleet.on_terminate) as s:
        yield s


def headless_settings(dsn: str, runpod: FakeRunpod, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        WORKER_PROTOCOL="headless-wan2gp",
        RUNPOD_CONTAINER_IMAGE="runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
        RUNPOD_CONTAINER_ARGS=ARGS,
        WORKER_EXTRA_ENV={
            "SUPABASE_URL": "https://example.supabase.co",
            "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
        },
        GPU_IDLE_TIMEOUT_SEC=1.5,
        SWEEP_INTERVAL_SEC=1,
        SCALE_DOWN_IDLE_SEC=0.3,
        MAX_ACTIVE_GPUS=3,
    )
    values.update(overrides)
    settings = runpod_settings(dsn, runpod, **values)
    return settings.model_copy(update={"worker_database_url": None})


async def queue(conn: asyncpg.Connection, count: int) -> list[str]:
    """Alice's GPU tasks (run_type gpu, a user with credits: the seed's claim takes them),
    oldest first: the seed's claim hands them out in that order."""
    rows = await conn.fetch(
        "INSERT INTO tasks (task_type, params, status, project_id, created_at) "
        "SELECT 'single_image', jsonb_build_object('prompt', 'p' || g), 'Queued', $1::uuid, "
        "       now() + g * interval '1 millisecond' "
        "FROM generate_series(1, $2) g ORDER BY g RETURNING id",
        ALICE_PROJECT,
        count,
    )
    return [str(r["id"]) for r in rows]


def live_pods(runpod: FakeRunpod) -> list[FakePod]:
    return [p for p in runpod.pods.values() if runpod.status_of(p.id) != "TERMINATED"]


async def task_row(conn: asyncpg.Connection, task_id: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "SELECT status::text AS status, worker_id, error_message FROM tasks WHERE id = $1",
        uuid.UUID(task_id),
    )


async def test_pods_run_the_seeds_worker_with_its_args_and_env(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    settings = headless_settings(migrated_seed_dsn, runpod)
    async with running(settings):
        [task_id] = await queue(db, 1)
        call = await runpod.wait_for_create(timeout=WAIT)
        await wait_until(lambda: task_id in fleet.done, timeout=WAIT, what="task completed")
    assert call.status == 201  # the fake checks the body against Runpod's contract
    assert call.body["args"] == ARGS
    env = call.body["env"]
    assert env["WORKER_ID"] == call.body["name"]
    assert env["SUPABASE_SERVICE_ROLE_KEY"] == SERVICE_KEY
    assert "DATABASE_URL" not in env and "WORKER_TOKEN" not in env  # not gpu-reactor's
    assert SERVICE_KEY in settings.secrets()  # scrubbed from logs and /status
    assert (await task_row(db, task_id))["status"] == "Complete"


async def test_a_killed_worker_is_noticed_by_its_heartbeat_and_its_task_redone(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    async with running(headless_settings(migrated_seed_dsn, runpod, MAX_ACTIVE_GPUS=1)):
        [task_id] = await queue(db, 1)
        fleet.held.add(task_id)
        first = await wait_until(lambda: fleet.claimed.get(task_id), timeout=WAIT, what="claim")
        await fleet.kill(first)  # mid-task: its heartbeat stops, no 'crashed' beat

        second = await wait_until(
            lambda: (w := fleet.claimed.get(task_id)) != first and w,
            timeout=WAIT,
            what="the task claimed again by a replacement",
        )
        row = await task_row(db, task_id)
        # The seed's claim counts no attempt; gpu-reactor counts the one lost.
        assert row["error_message"] == f"worker {first} was lost during attempt 1"
        fleet.release(task_id)
        await wait_until(lambda: task_id in fleet.done, timeout=WAIT, what="task redone")

    assert fleet.done[task_id] == second
    assert (await task_row(db, task_id))["status"] == "Complete"
    dead = await db.fetchrow(
        "SELECT status, error_reason, pod_id FROM workers WHERE id = $1", first
    )
    assert dead["status"] == "error" and "heartbeat stale" in dead["error_reason"]
    assert runpod.status_of(dead["pod_id"]) in (None, "TERMINATED")


async def test_a_worker_that_writes_crashed_is_gone_and_its_task_requeued(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    # A long heartbeat timeout: only the worker's own 'crashed' can end it in time.
    settings = headless_settings(migrated_seed_dsn, runpod, MAX_ACTIVE_GPUS=1)
    settings = settings.model_copy(update={"gpu_idle_timeout_sec": 600.0})
    async with running(settings):
        [task_id] = await queue(db, 1)
        fleet.held.add(task_id)
        first = await wait_until(lambda: fleet.claimed.get(task_id), timeout=WAIT, what="claim")
        pod_id = runpod.pod_by_name(first).id  # type: ignore[union-attr]
        # The worker process ends: its guardian sends its last beat, 'crashed' (nothing
        # can beat 'active' after it), then the pod's program is gone.
        await fleet.workers[first].stop_heartbeat()
        assert await db.fetchval("SELECT status FROM workers WHERE id = $1", first) == "crashed"
        await fleet.kill(first)
        await wait_until(
            lambda: (w := fleet.claimed.get(task_id)) != first and w,
            timeout=WAIT,
            what="the crashed worker's task claimed by a replacement",
        )
        fleet.release(task_id)
        await wait_until(lambda: task_id in fleet.done, timeout=WAIT, what="task redone")
        await wait_until(
            lambda: runpod.status_of(pod_id) in (None, "TERMINATED"),
            timeout=WAIT,
            what="the crashed worker's pod terminated",
        )


async def test_scale_down_ends_idle_pods_without_losing_a_task(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    async with running(headless_settings(migrated_seed_dsn, runpod)):
        tasks = await queue(db, 3)
        long_one = tasks[-1]  # the newest: no short task waits behind it
        fleet.held.add(long_one)
        await wait_until(lambda: len(runpod.created) == 3, timeout=WAIT, what="three pods")
        await wait_until(
            lambda: set(fleet.done) == set(tasks[:-1]), timeout=WAIT, what="short tasks done"
        )
        # The row's holder: the seed's claim takes no row lock, so two stand-ins claiming
        # at once may both be handed the task; the row keeps the first one's id, and the
        # other, idle as far as the database can tell, is drained with the idle ones.
        holder = await wait_until(
            lambda: db.fetchval(
                "SELECT worker_id FROM tasks WHERE id = $1 AND status = 'In Progress'",
                uuid.UUID(long_one),
            ),
            what="the long task's holder",
        )
        # Only the busy worker is kept: the idle ones are drained and their pods ended.
        await wait_until(
            lambda: [p.env["WORKER_ID"] for p in live_pods(runpod)] == [holder],
            timeout=WAIT,
            what="idle pods ended, the busy one kept",
        )
        assert (await task_row(db, long_one))["status"] == "In Progress"
        fleet.release(long_one)
        await wait_until(lambda: not live_pods(runpod), timeout=WAIT, what="last pod ended")

    rows = await db.fetch(
        "SELECT status::text AS status, error_message FROM tasks WHERE id = ANY ($1::uuid[])",
        [uuid.UUID(t) for t in tasks],
    )
    assert [(r["status"], r["error_message"]) for r in rows] == [("Complete", None)] * 3
    # Retired as drained, every one. (The status column of a row may read 'active' again:
    # a beat that lands between the retire and the pod's end rewrites it. terminated_at
    # is the reactor's mark, and the snapshot holds such a row retired.)
    ended = await db.fetch("SELECT terminated_at, error_reason FROM workers WHERE managed")
    assert len(ended) == 3
    assert all(r["terminated_at"] is not None and r["error_reason"] is None for r in ended)
    assert (await read_snapshot(db)).workers == ()
    assert set(fleet.done) == set(tasks)


async def test_a_drain_holds_while_the_worker_keeps_beating_active(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    async with running(headless_settings(migrated_seed_dsn, runpod, MAX_ACTIVE_GPUS=1)):
        [task_id] = await queue(db, 1)
        fleet.held.add(task_id)
        worker_id = await wait_until(lambda: fleet.claimed.get(task_id), timeout=WAIT, what="claim")
        assert await db.fetchval("SELECT gpu_reactor.drain($1, 'test')", worker_id) == (
            "terminating"
        )
        worker = fleet.workers[worker_id]
        beats = worker.beats
        await asyncio.wait_for(worker.wait_for_beats(beats + 3), WAIT)
        # The worker wrote 'active' over the status column three times ...
        assert await db.fetchval("SELECT status FROM workers WHERE id = $1", worker_id) == "active"
        snap = await read_snapshot(db)
        state = snap.worker(worker_id)
        # ... and it is still draining, and still running its task (not cut short).
        assert state is not None and state.status == WorkerStatus.TERMINATING
        assert runpod.pod_by_name(worker_id) in live_pods(runpod)
        assert (await task_row(db, task_id))["status"] == "In Progress"
        fleet.release(task_id)
        await wait_until(
            lambda: runpod.pod_by_name(worker_id) not in live_pods(runpod),
            timeout=WAIT,
            what="the drained pod ended after its task",
        )
    assert fleet.done[task_id] == worker_id
    row = await db.fetchrow(
        "SELECT terminated_at, drain_reason FROM workers WHERE id = $1", worker_id
    )
    assert row["terminated_at"] is not None and row["drain_reason"] == "test"


async def test_recovery_puts_a_lost_workers_task_back_the_seeds_way(
    migrated_seed_dsn: str, db: asyncpg.Connection
) -> None:
    [task_id] = await queue(db, 1)
    async with headless_worker(migrated_seed_dsn, "gpu-reactor-1057c0de") as worker:
        claimed = await worker.claim()
    assert claimed is not None and str(claimed.id) == task_id
    # The seed's timing trigger refuses a plain connection's write of the timing columns ...
    with pytest.raises(asyncpg.RaiseError, match="Timing fields can only be modified"):
        await db.execute(
            "UPDATE tasks SET generation_started_at = NULL WHERE id = $1", uuid.UUID(task_id)
        )
    # ... and the reactor's recovery passes it as the seed's service role does.
    requeued = await db.fetch(query("reset_orphaned_tasks"), ["gpu-reactor-1057c0de"])
    assert [(str(r["task_id"]), r["new_status"]) for r in requeued] == [(task_id, "Queued")]
    row = await db.fetchrow(
        "SELECT status::text AS status, worker_id, generation_started_at FROM tasks WHERE id = $1",
        uuid.UUID(task_id),
    )
    assert tuple(row) == ("Queued", None, None)


# --- the seed's chain, demand the seed orchestrator's way (DEMAND_SQL's default) ---


async def _task(
    conn: asyncpg.Connection, task_type: str, project: str, after: list[str] | None = None
) -> str:
    return str(
        await conn.fetchval(
            "INSERT INTO tasks (task_type, params, status, project_id, dependant_on)"
            " VALUES ($1, '{}', 'Queued', $2::uuid, $3::uuid[]) RETURNING id",
            task_type,
            project,
            after,
        )
    )


async def test_the_chain_runs_in_order_and_nothing_else_rents_a_gpu(
    migrated_seed_dsn: str, db: asyncpg.Connection, runpod: FakeRunpod, fleet: Fleet
) -> None:
    settings = headless_settings(
        migrated_seed_dsn, runpod, MAX_ACTIVE_GPUS=3, TASKS_PER_GPU_THRESHOLD=1
    )
    async with running(settings):
        # Nobody can take these: an API task, and a task of a user without credits.
        api = await _task(db, "image_upscale", ALICE_PROJECT)
        broke = await _task(db, "single_image", BOB_PROJECT)
        segment_0 = await _task(db, "travel_segment", ALICE_PROJECT)
        segment_1 = await _task(db, "travel_segment", ALICE_PROJECT, [segment_0])
        stitch = await _task(db, "travel_stitch", ALICE_PROJECT, [segment_0, segment_1])
        await wait_until(lambda: stitch in fleet.done, timeout=WAIT, what="the chain done")
        await wait_until(lambda: not live_pods(runpod), timeout=WAIT, what="scale to zero")

    # Each link ran only once the ones it waits for were Complete, on one GPU at a time:
    # the seed's count never saw more than one task a GPU worker could take.
    assert list(fleet.done) == [segment_0, segment_1, stitch]
    assert len(runpod.pods) <= 3
    statuses = {
        str(r["id"]): r["status"]
        for r in await db.fetch(
            "SELECT id, status::text AS status FROM tasks WHERE id = ANY ($1::uuid[])",
            [uuid.UUID(t) for t in (api, broke)],
        )
    }
    assert statuses == {api: "Queued", broke: "Queued"}
    assert api not in fleet.claimed and broke not in fleet.claimed
    demand = DemandReader(SEED_DEMAND_SQL)
    snap = await read_snapshot(db, demand=demand)
    assert (snap.queued, snap.demand) == (2, 0)  # queued, and no GPU wanted for them
