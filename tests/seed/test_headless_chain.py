"""The seed's chain, end to end under WORKER_PROTOCOL=headless-wan2gp (issue 14 §4): the
real reactor and fake Runpod, stand-in Headless-Wan2GP workers in the pods, demand the
seed orchestrator's way (DEMAND_SQL's default, count_eligible_tasks_service_role)."""

from __future__ import annotations

import uuid

import asyncpg

from reactor.engine.demand import SEED_DEMAND_SQL, DemandReader
from reactor.engine.snapshot import read_snapshot
from tests.engine.harness import running
from tests.fakes.runpod_v2 import FakeRunpod
from tests.seed.fixture import ALICE_PROJECT, BOB_PROJECT
from tests.seed.test_headless_e2e import (  # noqa: F401  (fixtures)
    WAIT,
    Fleet,
    db,
    fleet,
    headless_settings,
    live_pods,
    runpod,
)
from tests.util import wait_until


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
