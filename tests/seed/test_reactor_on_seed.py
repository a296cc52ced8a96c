"""gpu-reactor on the seed's database (issue 14).

The fixture is loaded, then ``migrate`` runs as ``gpu-reactor migrate`` does. Each
breakage the issue names (and a few it does not) is a test of the right behaviour: the
app keeps its rows, functions, views, policies and grants; the reactor can write its
rows, pass the timing trigger, count demand the seed's way and leave adopted workers and
waiting orchestrators alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from reactor.db.migrate import load_schema, migrate
from reactor.db.queries import query
from reactor.domain.actions import RequeueTask, Retire
from reactor.domain.model import WorkerStatus
from reactor.domain.policy import decide
from reactor.engine.demand import SEED_DEMAND_SQL, DemandReader, demand_sql_for
from reactor.engine.snapshot import read_snapshot
from reactor.settings import Settings
from tests.seed.calls import (
    SEED_CALLS,
    SEED_VIEWS,
    answer,
)
from tests.seed.fixture import (
    API_TASK,
    BOB_TASK,
    DEPENDENCIES,
    ORCHESTRATOR,
    SEED_WORKER,
    SEGMENT_0,
    SEGMENT_1,
    STITCH,
)
from tests.seed.standin import headless_worker

TIMING_REFUSED = "Timing fields can only be modified by system functions"
both_shapes = pytest.mark.parametrize("dependencies", DEPENDENCIES)

# The seed's own columns of its tables: migrate may add columns, never change these.
SEED_ROWS = {
    "tasks": "id, task_type, params, status, dependant_on, output_location, created_at,"
    " updated_at, project_id, generation_processed_at, worker_id, attempts, error_message,"
    " result_data, generation_started_at, generation_created",
    "workers": "id, instance_type, created_at, last_heartbeat, status, metadata, current_model",
    "users": "id, name, email, settings, credits",
    "projects": "id, name, user_id, created_at",
    "task_types": "id, name, run_type, category, is_active",
}

FUNCTION_DEFINITIONS = """
SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
"""

VIEW_COLUMNS = """
SELECT column_name::text, data_type::text FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position
"""


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


async def _rows(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(r) for r in await conn.fetch(f"SELECT {cols} FROM {table} ORDER BY id")]
        for table, cols in SEED_ROWS.items()
    }


async def _functions(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["signature"]: r["definition"] for r in await conn.fetch(FUNCTION_DEFINITIONS)}


@pytest.fixture
async def pod(migrated_seed_pod_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A gpu-worker pod's connection to the migrated seed database."""
    connection = await asyncpg.connect(migrated_seed_pod_dsn)
    yield connection
    await connection.close()


# --- migrate leaves the app as it was ----------------------------------------------------


@both_shapes
async def test_migrate_runs_on_the_seed_and_keeps_every_seed_row(
    seed: asyncpg.Connection,
) -> None:
    before = await _rows(seed)
    applied = await migrate(seed)
    assert applied == [load_schema().label]
    assert await _rows(seed) == before
    assert await migrate(seed) == []


async def test_migrate_keeps_row_level_security_policies_and_the_timing_trigger(
    seed: asyncpg.Connection, migrated_seed: asyncpg.Connection
) -> None:
    guards = """
        SELECT (SELECT array_agg(relname::text ORDER BY relname) FROM pg_class
                WHERE relrowsecurity AND relnamespace = 'public'::regnamespace) AS secured,
               (SELECT array_agg(tablename || ': ' || policyname ORDER BY tablename, policyname)
                FROM pg_policies
                WHERE schemaname = 'public') AS policies,
               (SELECT pg_get_triggerdef(oid) FROM pg_trigger
                WHERE tgname = 'prevent_timing_manipulation_trigger') AS timing_trigger
    """
    assert dict(await migrated_seed.fetchrow(guards)) == dict(await seed.fetchrow(guards))


@pytest.mark.parametrize("name", list(SEED_CALLS))
async def test_every_seed_call_still_answers_as_before(
    migrated_seed: asyncpg.Connection, name: str
) -> None:
    # Supabase RPC passes arguments by name: the seed's functions must keep theirs.
    call = SEED_CALLS[name]
    assert await answer(migrated_seed, call) == call.expected


async def test_migrate_keeps_every_seed_function_as_it_was(
    seed: asyncpg.Connection, migrated_seed: asyncpg.Connection
) -> None:
    before, after = await _functions(seed), await _functions(migrated_seed)
    changed = sorted(sig for sig, definition in before.items() if after.get(sig) != definition)
    assert changed == [], f"seed functions migrate dropped or changed: {changed}"


@pytest.mark.parametrize("view", SEED_VIEWS)
async def test_migrate_keeps_the_seed_views_and_their_columns(
    seed: asyncpg.Connection, migrated_seed: asyncpg.Connection, view: str
) -> None:
    before = [tuple(r) for r in await seed.fetch(VIEW_COLUMNS, view)]
    after = [tuple(r) for r in await migrated_seed.fetch(VIEW_COLUMNS, view)]
    assert after == before, f"{view} columns changed"
    await migrated_seed.fetch(f"SELECT * FROM {view}")


# --- the reactor's worker rows ----------------------------------------------------------


async def test_the_reactor_can_write_its_spawn_intent(migrated_seed: asyncpg.Connection) -> None:
    await migrated_seed.execute(
        query("insert_spawn_intent"), "gpu-reactor-w1", 0.69, "2 tasks need 1 worker", None, "a40"
    )
    row = await migrated_seed.fetchrow(
        "SELECT status, pool FROM workers WHERE id = 'gpu-reactor-w1'"
    )
    assert (row["status"], row["pool"]) == ("spawning", "a40")


@pytest.mark.parametrize(
    ("statement", "args", "status"),
    [
        ("mark_drain", ("idle",), "terminating"),
        ("retire_worker", ("error", "heartbeat stale"), "error"),
    ],
    ids=["drain", "retire"],
)
async def test_the_reactor_can_drain_and_retire_a_worker(
    migrated_seed: asyncpg.Connection, statement: str, args: tuple[str, ...], status: str
) -> None:
    assert await migrated_seed.execute(query(statement), SEED_WORKER, *args) == "UPDATE 1"
    assert (
        await migrated_seed.fetchval("SELECT status FROM workers WHERE id = $1", SEED_WORKER)
        == status
    )


# --- task writes under the seed's timing trigger -----------------------------------------

TASK_WRITES = {
    # gpu-worker, over its pod login: claim, complete, fail.
    "claim": (
        "pod",
        "SELECT id FROM gpu_reactor.func_claim_available_task($1, NULL)",
        (SEED_WORKER,),
    ),
    "complete": (
        "pod",
        "SELECT gpu_reactor.func_mark_task_complete($1::uuid, '{}', $2, NULL) AS id",
        (ORCHESTRATOR, SEED_WORKER),
    ),
    "fail": (
        "pod",
        "SELECT gpu_reactor.func_mark_task_failed($1::uuid, 'oom', $2, NULL) AS id",
        (ORCHESTRATOR, SEED_WORKER),
    ),
    # The reactor: a stuck task taken back, a lost worker's tasks requeued.
    "requeue": (
        "reactor",
        "SELECT gpu_reactor.func_requeue_task($1::uuid, $2, 0, 'stuck') AS id",
        (ORCHESTRATOR, SEED_WORKER),
    ),
    "reset_orphans": (
        "reactor",
        "SELECT task_id AS id FROM gpu_reactor.func_reset_orphaned_tasks($1::text[])",
        ([SEED_WORKER],),
    ),
}


@pytest.mark.parametrize("write", list(TASK_WRITES))
async def test_task_writes_pass_the_timing_trigger(
    migrated_seed: asyncpg.Connection, pod: asyncpg.Connection, write: str
) -> None:
    who, sql, args = TASK_WRITES[write]
    conn = pod if who == "pod" else migrated_seed
    rows = await conn.fetch(sql, *args)
    assert [r["id"] for r in rows if r["id"] is not None], f"{write} changed no task"


async def test_gpu_workers_claim_waits_for_every_dependency(
    migrated_seed: asyncpg.Connection, pod: asyncpg.Connection
) -> None:
    # Credits and run types are the seed's rules, not gpu-worker's: take those tasks away.
    await migrated_seed.execute(
        "DELETE FROM tasks WHERE id = ANY ($1::uuid[])", [BOB_TASK, API_TASK]
    )
    claim = "SELECT id FROM gpu_reactor.func_claim_available_task($1, NULL)"
    assert str(await pod.fetchval(claim, SEED_WORKER)) == SEGMENT_0
    assert await pod.fetchval(claim, SEED_WORKER) is None  # segment 1 waits for segment 0
    await pod.fetchval(
        "SELECT gpu_reactor.func_mark_task_complete($1::uuid, '{}', $2)", SEGMENT_0, SEED_WORKER
    )
    assert str(await pod.fetchval(claim, SEED_WORKER)) == SEGMENT_1


# --- demand ------------------------------------------------------------------------------

NOT_DEMAND = {
    "blocked": (SEGMENT_1, STITCH),  # waiting on dependencies not Complete
    "no_credits": (BOB_TASK,),
    "api": (API_TASK,),  # run_type api: the seed's API orchestrator runs it, not a GPU
    "waiting_orchestrator": (ORCHESTRATOR,),  # In Progress, but holds no GPU
}


@pytest.mark.parametrize("dependencies", DEPENDENCIES)
@pytest.mark.parametrize("kind", list(NOT_DEMAND))
async def test_demand_counts_only_what_a_gpu_worker_could_take(
    migrated_seed: asyncpg.Connection, kind: str
) -> None:
    # What WORKER_PROTOCOL=headless-wan2gp counts by default: the seed orchestrator's rule.
    demand = DemandReader(await demand_sql_for(migrated_seed, None, "headless-wan2gp"))
    await demand.check(migrated_seed)
    before = await read_snapshot(migrated_seed, demand=demand)
    await migrated_seed.execute(
        "DELETE FROM tasks WHERE id = ANY ($1::uuid[])", list(NOT_DEMAND[kind])
    )
    after = await read_snapshot(migrated_seed, demand=demand)
    assert after.demand == before.demand, f"removing {kind} tasks changed demand"
    assert after.demand == 1  # segment 0, alice's


# --- adopted rows ------------------------------------------------------------------------


async def test_the_sweep_leaves_a_healthy_seed_worker_alone(
    migrated_seed: asyncpg.Connection,
) -> None:
    snap = await read_snapshot(migrated_seed, pods=())  # a sweep: the fleet has no pods
    retired = [
        (a.worker_id, str(a.cause)) for a in decide(snap, _settings()) if isinstance(a, Retire)
    ]
    assert retired == []


async def test_a_waiting_orchestrator_is_not_requeued_as_stuck(
    migrated_seed: asyncpg.Connection,
) -> None:
    # Exempt by STUCK_TASK_EXEMPT_TYPES' default under headless-wan2gp (%_orchestrator).
    settings = Settings(_env_file=None, WORKER_PROTOCOL="headless-wan2gp")  # type: ignore[call-arg]
    snap = await read_snapshot(migrated_seed)
    requeued = [(a.task_id, a.reason) for a in decide(snap, settings) if isinstance(a, RequeueTask)]
    assert requeued == []


async def test_a_seed_workers_heartbeat_does_not_undo_its_drain(
    migrated_seed: asyncpg.Connection, migrated_seed_dsn: str
) -> None:
    # Widen the status CHECK first (the smallest fix the issue asks for), so this test
    # pins the heartbeat alone.
    await migrated_seed.execute(
        "ALTER TABLE workers DROP CONSTRAINT IF EXISTS workers_status_check,"
        " ADD CONSTRAINT workers_status_check CHECK (status IN ('active', 'inactive',"
        " 'terminated', 'spawning', 'terminating', 'error', 'crashed'))"
    )
    assert await migrated_seed.execute(query("mark_drain"), SEED_WORKER, "idle") == "UPDATE 1"
    async with headless_worker(migrated_seed_dsn, SEED_WORKER) as worker:
        await worker.beat()
    snap = await read_snapshot(migrated_seed)
    worker_state = snap.worker(SEED_WORKER)
    assert worker_state is not None
    assert worker_state.status == WorkerStatus.TERMINATING, (
        f"drain undone: the worker is {worker_state.status}"
    )


# --- a finding the issue does not name -------------------------------------------------

REACTOR_ONLY = (
    "TABLE gpu_reactor.settings",
    "TABLE gpu_reactor.spawn_breaker",
    "TABLE gpu_reactor.migrations",
    "TABLE gpu_reactor.shared_changes",
    "FUNCTION gpu_reactor.func_requeue_task(uuid, text, integer, text)",
    "FUNCTION gpu_reactor.func_reset_orphaned_tasks(text[])",
    "FUNCTION gpu_reactor.drain(text, text)",
    "FUNCTION gpu_reactor.func_claim_available_task(text, text[])",
)


# Supabase grants anon and authenticated privileges by default on what is created in the
# schemas it manages; migrate takes any that reach gpu-reactor's own objects back
# (sql/queries.sql close_to_app_roles), or the app's public anon key could rewrite
# gpu-reactor's settings or requeue tasks.
async def test_gpu_reactors_own_objects_are_closed_to_the_apps_public_roles(
    migrated_seed: asyncpg.Connection,
) -> None:
    open_to = []
    for item in REACTOR_ONLY:
        kind, name = item.split(" ", 1)
        check = "has_table_privilege" if kind == "TABLE" else "has_function_privilege"
        privilege = "UPDATE" if kind == "TABLE" else "EXECUTE"
        for role in ("anon", "authenticated"):
            if await migrated_seed.fetchval(f"SELECT {check}($1, $2, $3)", role, name, privilege):
                open_to.append(f"{role}: {privilege} {name}")
    assert open_to == [], f"open to the app's public roles: {open_to}"
    # ... and only gpu-reactor's: the app's own grants are left as the app made them.
    for role in ("anon", "authenticated"):
        assert await migrated_seed.fetchval(
            "SELECT has_table_privilege($1, 'tasks', 'SELECT')", role
        )
        assert await migrated_seed.fetchval(
            "SELECT has_function_privilege($1, 'all_dependencies_complete(uuid[])', 'EXECUTE')",
            role,
        )


async def test_demand_sql_defaults_to_the_seeds_count_only_under_its_worker_and_where_it_exists(
    migrated_seed: asyncpg.Connection,
) -> None:
    assert await demand_sql_for(migrated_seed, None, "headless-wan2gp") == SEED_DEMAND_SQL
    assert await demand_sql_for(migrated_seed, None, "gpu-worker") is None
    assert await demand_sql_for(migrated_seed, "SELECT 4", "headless-wan2gp") == "SELECT 4"
    await migrated_seed.execute("DROP FUNCTION count_eligible_tasks_service_role(boolean, text)")
    assert await demand_sql_for(migrated_seed, None, "headless-wan2gp") is None
