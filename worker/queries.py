"""The only SQL the worker runs: calls to the functions of the SQL contract.

They live in sql/migrations/0004_functions.sql and 0005_triggers.sql; the gpu_worker role
may EXECUTE these and read nothing else. Kept here as named constants (the worker image
does not ship the reactor's sql/ package).
"""

from __future__ import annotations

CHANNEL = "gpu_reactor"

HEARTBEAT = "SELECT func_update_worker_heartbeat($1::text, $2::jsonb)"
CLAIM = (
    "SELECT id, task_type, params::text AS params, attempts, max_attempts "
    "FROM func_claim_available_task($1::text, $2::text[])"
)
COMPLETE = "SELECT func_mark_task_complete($1::uuid, $2::jsonb, $3::text, $4::integer)"
FAIL = "SELECT func_mark_task_failed($1::uuid, $2::text, $3::text, $4::integer)"
REPORT_DRAINED = "SELECT func_report_worker_drained($1::text)"
ARM = "SELECT gpu_reactor_arm()"
RELEASE_HELD = "SELECT func_release_worker_tasks($1::text)"
PING = "SELECT 1"
# Session-wide: every call on this connection then proves which worker it comes from.
SET_TOKEN = "SELECT set_config('gpu_reactor.worker_token', $1::text, false)"
