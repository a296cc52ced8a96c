"""The seed system's calls into its database, as its callers make them: by name (Supabase
RPC passes every argument by name), under the service-role key's claims.

Each call's ``expected`` is its answer on the fresh fixture, timestamps masked; the
fixture tests prove the fixture gives it, and the tests of today's gpu-reactor ask for
the same answer after ``gpu-reactor migrate``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tests.seed.fixture import (
    BOB_TASK,
    ORCHESTRATOR,
    SEED_WORKER,
    SEGMENT_0,
    as_service_role,
)

TIMESTAMP = "<timestamp>"


@dataclass(frozen=True)
class SeedCall:
    caller: str  # who makes this call in the seed system
    sql: str
    args: tuple[Any, ...]
    expected: list[dict[str, Any]]


def _mask(value: Any) -> Any:
    return TIMESTAMP if isinstance(value, datetime) else value


async def answer(conn: asyncpg.Connection, call: SeedCall) -> list[dict[str, Any]]:
    """Make ``call`` under the service role; its rows, timestamps masked."""
    async with as_service_role(conn) as c:
        rows = await c.fetch(call.sql, *call.args)
    return [{k: _mask(v) for k, v in r.items()} for r in rows]


SEED_CALLS: dict[str, SeedCall] = {
    "func_claim_available_task": SeedCall(
        caller="the seed's first claim (edge functions before claim-next-task): the oldest "
        "Queued task, with no eligibility rule, so bob's",
        sql="SELECT * FROM func_claim_available_task(worker_id_param => $1)",
        args=(SEED_WORKER,),
        expected=[
            {
                "id": uuid.UUID(BOB_TASK),
                "status": "In Progress",
                "attempts": 0,
                "worker_id": SEED_WORKER,
                "generation_started_at": TIMESTAMP,
                "task_data": json.dumps({"prompt": "a quiet harbour"}),
                "created_at": TIMESTAMP,
                "task_type": "single_image",
            }
        ],
    ),
    "func_update_worker_heartbeat": SeedCall(
        caller="the seed orchestrator (gpu_orchestrator/database.py, update_worker_heartbeat)",
        sql="SELECT func_update_worker_heartbeat(worker_id_param => $1,"
        " vram_total_mb_param => $2, vram_used_mb_param => $3) AS answer",
        args=(SEED_WORKER, 24564, 2048),
        expected=[{"answer": None}],
    ),
    "func_mark_task_complete": SeedCall(
        caller="the seed's RPC clients (task_id_param, result_data_param)",
        sql="SELECT func_mark_task_complete(task_id_param => $1::uuid,"
        " result_data_param => $2::jsonb) AS answer",
        args=(ORCHESTRATOR, json.dumps({"ok": True})),
        expected=[{"answer": None}],
    ),
    "func_mark_task_failed": SeedCall(
        caller="the seed's RPC clients, through its text overload (p_task_id, p_error_message)",
        sql="SELECT func_mark_task_failed(p_task_id => $1, p_error_message => $2) AS answer",
        args=(ORCHESTRATOR, "CUDA out of memory"),
        expected=[{"answer": True}],
    ),
    "func_reset_orphaned_tasks": SeedCall(
        caller="the seed's RPC clients (failed_worker_ids)",
        sql="SELECT func_reset_orphaned_tasks(failed_worker_ids => $1::text[]) AS answer",
        args=([SEED_WORKER],),
        expected=[{"answer": 1}],
    ),
    "func_worker_heartbeat_with_logs": SeedCall(
        caller="Headless-Wan2GP's heartbeat guardian (heartbeat_guardian.py), every 20 s",
        sql="SELECT func_worker_heartbeat_with_logs(worker_id_param => $1,"
        " vram_total_mb_param => $2, vram_used_mb_param => $3, logs_param => $4::jsonb,"
        " status_param => $5) AS answer",
        args=(SEED_WORKER, 24564, 2048, "[]", "active"),
        expected=[
            {
                "answer": json.dumps(
                    {
                        "success": True,
                        "log_errors": 0,
                        "logs_inserted": 0,
                        "heartbeat_updated": True,
                    }
                )
            }
        ],
    ),
    "claim_next_task_service_role": SeedCall(
        caller="the claim-next-task edge function, for Headless-Wan2GP (run_type gpu)",
        sql="SELECT task_id, task_type FROM claim_next_task_service_role(p_worker_id => $1,"
        " p_include_active => false, p_run_type => 'gpu', p_same_model_only => false)",
        args=(SEED_WORKER,),
        expected=[{"task_id": uuid.UUID(SEGMENT_0), "task_type": "travel_segment"}],
    ),
    "count_eligible_tasks_service_role": SeedCall(
        caller="the task-counts edge function, for the seed orchestrator's scaling",
        sql="SELECT count_eligible_tasks_service_role(p_include_active => true,"
        " p_run_type => 'gpu') AS answer",
        args=(),
        expected=[{"answer": 1}],
    ),
    "func_get_tasks_by_status": SeedCall(
        caller="the seed's RPC clients (status_filter)",
        sql="SELECT count(*) AS answer FROM func_get_tasks_by_status(status_filter => $1)",
        args=(["Queued"],),
        expected=[{"answer": 5}],
    ),
    "func_update_task_status": SeedCall(
        caller="the seed's RPC clients (p_task_id, p_status, p_output_location)",
        sql="SELECT func_update_task_status(p_task_id => $1, p_status => 'Complete',"
        " p_output_location => $2) AS answer",
        args=(ORCHESTRATOR, "https://example.supabase.co/storage/v1/object/public/out.mp4"),
        expected=[{"answer": True}],
    ),
}

# The calls today's migrate breaks: it drops the seed's functions of these names and
# creates its own with other parameter names.
SEED_VIEWS = (
    "orchestrator_status",
    "active_workers_health",
    "recent_task_activity",
    "worker_performance",
)
