"""The fixture behaves as the seed's database does, and the stand-in worker as the seed's
worker: what its callers call answers them, the claim keeps to its rules, the trigger and
the row level security refuse what they refuse. No gpu-reactor here."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.pg import PgServer
from tests.seed.calls import SEED_CALLS, SEED_VIEWS, answer
from tests.seed.fixture import (
    ALICE,
    ALICE_PROJECT,
    API_TASK,
    BOB,
    BOB_TASK,
    CHAIN,
    DEPENDENCIES,
    ORCHESTRATOR,
    QUEUED,
    SEED_WORKER,
    SEGMENT_0,
    SEGMENT_1,
    STITCH,
    Dependencies,
    as_role,
    as_service_role,
    load_seed,
)
from tests.seed.standin import headless_worker
from tests.util import wait_until

TIMING_REFUSED = "Timing fields can only be modified by system functions"
both_shapes = pytest.mark.parametrize("dependencies", DEPENDENCIES)


async def _statuses(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT id::text, status::text FROM tasks")
    return {r["id"]: r["status"] for r in rows}


async def _count(conn: asyncpg.Connection, include_active: bool, run_type: str | None) -> int:
    async with as_service_role(conn) as c:
        return await c.fetchval(  # type: ignore[no-any-return]
            "SELECT count_eligible_tasks_service_role(p_include_active => $1, p_run_type => $2)",
            include_active,
            run_type,
        )


@both_shapes
async def test_the_fixture_loads_on_a_fresh_database(
    pg_server: PgServer, dependencies: Dependencies
) -> None:
    name = await pg_server.create_empty_database()
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        await load_seed(conn, dependencies)
        dependant_on = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'tasks'::regclass AND attname = 'dependant_on'"
        )
        assert dependant_on == {"single": "uuid", "array": "uuid[]"}[dependencies]
        secured = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY ($1)",
            ["tasks", "workers", "users"],
        )
        assert sorted(r["relname"] for r in secured) == ["tasks", "users", "workers"]
        check = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'workers_status_check' AND conrelid = 'workers'::regclass"
        )
        assert check == (
            "CHECK ((status = ANY (ARRAY['active'::text, 'inactive'::text, 'terminated'::text])))"
        )
        assert await conn.fetchval(
            "SELECT attnotnull FROM pg_attribute"
            " WHERE attrelid = 'workers'::regclass AND attname = 'instance_type'"
        )
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'prevent_timing_manipulation_trigger'"
        )
        views = await conn.fetch(
            "SELECT viewname FROM pg_views WHERE viewname = ANY ($1)", list(SEED_VIEWS)
        )
        assert sorted(r["viewname"] for r in views) == sorted(SEED_VIEWS)
        by_status = await conn.fetch("SELECT status::text, count(*) FROM tasks GROUP BY 1")
        assert dict(tuple(r) for r in by_status) == {
            "Queued": len(QUEUED),
            "In Progress": 1,
            "Complete": 1,
            "Failed": 1,
        }
    finally:
        await conn.close()
        await pg_server.drop_database(name)


@pytest.mark.parametrize("name", list(SEED_CALLS))
async def test_the_seed_answers_its_callers_by_name(seed: asyncpg.Connection, name: str) -> None:
    call = SEED_CALLS[name]
    assert await answer(seed, call) == call.expected


async def test_the_seeds_own_named_failure_call_is_broken(seed: asyncpg.Connection) -> None:
    """func_mark_task_failed(task_id_param, error_message_param) has never worked: its
    CASE yields text for an enum column. Pinned so nobody 'preserves' a working call."""
    with pytest.raises(asyncpg.DatatypeMismatchError, match='column "status" is of type'):
        async with as_service_role(seed) as c:
            await c.execute(
                "SELECT func_mark_task_failed(task_id_param => $1::uuid,"
                " error_message_param => $2)",
                ORCHESTRATOR,
                "oom",
            )


async def test_a_heartbeat_that_leaves_out_status_param_is_ambiguous(
    seed: asyncpg.Connection,
) -> None:
    """Both overloads of func_worker_heartbeat_with_logs exist; only a call naming
    status_param (as the worker's always does) picks one."""
    with pytest.raises(asyncpg.AmbiguousFunctionError, match="is not unique"):
        await seed.execute(
            "SELECT func_worker_heartbeat_with_logs(worker_id_param => $1, logs_param => '[]')",
            SEED_WORKER,
        )


@both_shapes
async def test_the_standin_takes_the_chain_in_dependency_order(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    claimed = []
    async with headless_worker(seed_dsn, SEED_WORKER) as worker:
        for _ in CHAIN:
            task = await worker.claim()
            assert task is not None
            # Nothing else is ready while it runs: the next link waits for it, bob has no
            # credits and the upscale is an API task.
            assert await worker.claim() is None
            claimed.append(str(task.id))
            assert await worker.complete(task.id, f"https://example.com/{task.id}.mp4")
        assert await worker.claim() is None

    assert claimed == list(CHAIN)
    statuses = await _statuses(seed)
    assert {t: statuses[t] for t in (*CHAIN, ORCHESTRATOR)} == dict.fromkeys(
        (*CHAIN, ORCHESTRATOR), "Complete"
    )
    assert (statuses[API_TASK], statuses[BOB_TASK]) == ("Queued", "Queued")
    rows = await seed.fetch(
        "SELECT worker_id, generation_started_at, generation_processed_at FROM tasks"
        " WHERE id = ANY ($1::uuid[]) ORDER BY generation_started_at",
        list(CHAIN),
    )
    assert {r["worker_id"] for r in rows} == {SEED_WORKER}
    # Each link started only after the one before it had finished.
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier["generation_processed_at"] <= later["generation_started_at"]


@both_shapes
async def test_the_count_is_what_gpu_workers_may_claim(seed: asyncpg.Connection) -> None:
    assert await _count(seed, include_active=False, run_type="gpu") == 1  # segment 0
    assert await _count(seed, include_active=True, run_type="gpu") == 1  # the parent is left out
    assert await _count(seed, include_active=False, run_type="api") == 1  # the upscale
    assert await _count(seed, include_active=False, run_type=None) == 2  # never bob's

    async with as_service_role(seed) as c:
        await c.execute(
            "SELECT claim_next_task_service_role(p_worker_id => $1, p_include_active => false,"
            " p_run_type => 'gpu', p_same_model_only => false)",
            SEED_WORKER,
        )
    assert await _count(seed, include_active=False, run_type="gpu") == 0
    assert await _count(seed, include_active=True, run_type="gpu") == 1


async def test_the_per_user_limit_and_the_credits_decide_the_claim(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    await seed.execute(
        "INSERT INTO tasks (task_type, params, status, project_id, worker_id,"
        " generation_started_at)"
        " SELECT 'single_image', '{}', 'In Progress', $1, $2, now() FROM generate_series(1, 5)",
        ALICE_PROJECT,
        SEED_WORKER,
    )
    async with headless_worker(seed_dsn, SEED_WORKER) as worker:
        assert await worker.claim() is None  # alice has 5 running: her limit
        assert await _count(seed, include_active=False, run_type="gpu") == 0
        await seed.execute("UPDATE users SET credits = 10 WHERE id = $1", BOB)
        task = await worker.claim()
        assert task is not None and str(task.id) == BOB_TASK


async def test_the_timing_trigger_admits_only_the_service_role_and_system_functions(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    touch = "UPDATE tasks SET generation_started_at = now() WHERE id = $1"
    with pytest.raises(asyncpg.RaiseError, match=TIMING_REFUSED):
        await seed.execute(touch, SEGMENT_0)
    await seed.execute("UPDATE tasks SET params = '{}' WHERE id = $1", SEGMENT_0)  # no timing
    async with as_service_role(seed) as c:
        assert await c.execute(touch, SEGMENT_0) == "UPDATE 1"
    claim_task = await asyncpg.connect(seed_dsn, server_settings={"application_name": "claim_task"})
    try:
        assert await claim_task.execute(touch, SEGMENT_1) == "UPDATE 1"
    finally:
        await claim_task.close()


async def test_row_level_security_shows_the_app_roles_only_their_rows(
    seed: asyncpg.Connection,
) -> None:
    async with as_role(seed, "anon") as c:
        assert await c.fetchval("SELECT count(*) FROM tasks") == 0
        assert await c.fetchval("SELECT count(*) FROM workers") == 0
    async with as_role(seed, "authenticated", {"role": "authenticated", "sub": BOB}) as c:
        # bob's own task, plus every Queued / In Progress one (the claiming policy).
        visible = {str(r["id"]) for r in await c.fetch("SELECT id FROM tasks")}
        assert visible == {*QUEUED, ORCHESTRATOR}
        assert await c.fetchval("SELECT count(*) FROM users") == 1
    async with as_role(seed, "authenticated", {"role": "authenticated", "sub": ALICE}) as c:
        # All of hers, and bob's Queued one.
        assert await c.fetchval("SELECT count(*) FROM tasks") == 8
    async with as_role(seed, "authenticated", {"role": "authenticated"}) as c:
        assert await c.fetchval("SELECT count(*) FROM workers") == 2
    async with as_service_role(seed) as c:
        assert await c.fetchval("SELECT count(*) FROM tasks") == 8


async def test_the_standin_heartbeats_active_and_its_crashed_beat_is_refused(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    worker_id = "gpu-20260103_090000-new00001"
    async with headless_worker(seed_dsn, worker_id, heartbeat_interval=0.01) as worker:
        worker.start_heartbeat()
        await asyncio.wait_for(worker.wait_for_beats(1), 10)
        first = await seed.fetchrow("SELECT * FROM workers WHERE id = $1", worker_id)
        # An unknown worker registers itself by its beat.
        assert (first["status"], first["instance_type"]) == ("active", "external")
        await seed.execute("UPDATE workers SET status = 'inactive' WHERE id = $1", worker_id)
        await asyncio.wait_for(worker.wait_for_beats(3), 10)
        await worker.stop_heartbeat()
    row = await seed.fetchrow("SELECT * FROM workers WHERE id = $1", worker_id)
    assert row["last_heartbeat"] > first["last_heartbeat"]
    assert row["status"] == "active"  # every beat writes active, over what was there
    # Its last beat says crashed, which the seed's own CHECK refuses.
    assert [type(e) for e in worker.beat_errors] == [asyncpg.CheckViolationError]
    assert "workers_status_check" in str(worker.beat_errors[0])


@both_shapes
async def test_the_standin_fails_a_segment_and_its_whole_run(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    async with headless_worker(seed_dsn, SEED_WORKER) as worker:
        task = await worker.claim()
        assert task is not None and str(task.id) == SEGMENT_0
        cascaded = await worker.fail(task.id, "CUDA out of memory")
        assert sorted(str(t) for t in cascaded) == sorted([ORCHESTRATOR, SEGMENT_1, STITCH])
        await seed.execute("UPDATE tasks SET status = 'Complete' WHERE id = $1", BOB_TASK)
        with pytest.raises(LookupError):
            await worker.fail(uuid.UUID(BOB_TASK), "too late")
    row = await seed.fetchrow("SELECT status, output_location FROM tasks WHERE id = $1", task.id)
    assert tuple(row) == ("Failed", "CUDA out of memory")
    cascade = await seed.fetch(
        "SELECT status::text, error_message FROM tasks WHERE id = ANY ($1::uuid[])",
        [ORCHESTRATOR, SEGMENT_1, STITCH],
    )
    assert {tuple(r) for r in cascade} == {
        ("Failed", f"Cascaded failed from related task {SEGMENT_0}")
    }


async def test_the_seeds_claim_can_hand_one_task_to_two_workers(
    seed: asyncpg.Connection, seed_dsn: str
) -> None:
    """claim_next_task_service_role takes no row lock: a second claim that picked the
    same task waits for the first, then updates it again and returns it too, while the
    row keeps the first worker's id."""
    async with (
        headless_worker(seed_dsn, "gpu-a") as first,
        headless_worker(seed_dsn, "gpu-b") as second,
    ):
        holding = first.conn.transaction()
        await holding.start()
        await first.conn.execute("SET LOCAL ROLE service_role")
        await first.conn.execute(
            "SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)"
        )
        taken = await first.conn.fetchval(
            "SELECT task_id FROM claim_next_task_service_role(p_worker_id => 'gpu-a',"
            " p_include_active => false, p_run_type => 'gpu', p_same_model_only => false)"
        )
        racing = asyncio.create_task(second.claim())
        pid = second.conn.get_server_pid()
        await wait_until(
            lambda: seed.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ),
            what="the second claim to wait on the first one's row lock",
        )
        await holding.commit()
        again = await racing
    assert again is not None and again.id == taken == uuid.UUID(SEGMENT_0)
    assert await seed.fetchval("SELECT worker_id FROM tasks WHERE id = $1", taken) == "gpu-a"
