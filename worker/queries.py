"""The only SQL the worker runs: calls to the functions of the SQL contract.

They live in sql/schema.sql, in the schema gpu_reactor; the gpu_worker role
may EXECUTE these and read nothing else. Kept here as named constants (the worker image
does not ship the reactor's sql/ package).
"""

from __future__ import annotations

CHANNEL = "gpu_reactor"

HEARTBEAT = "SELECT gpu_reactor.func_update_worker_heartbeat($1::text, $2::jsonb)"
CLAIM = (
    "SELECT id, task_type, params::text AS params, attempts, max_attempts "
    "FROM gpu_reactor.func_claim_available_task($1::text, $2::text[])"
)
COMPLETE = "SELECT gpu_reactor.func_mark_task_complete($1::uuid, $2::jsonb, $3::text, $4::integer)"
FAIL = "SELECT gpu_reactor.func_mark_task_failed($1::uuid, $2::text, $3::text, $4::integer)"
REPORT_DRAINED = "SELECT gpu_reactor.func_report_worker_drained($1::text)"
ARM = "SELECT gpu_reactor.arm()"
RELEASE_HELD = "SELECT gpu_reactor.func_release_worker_tasks($1::text)"
PING = "SELECT 1"
# Session-wide: every call on this connection then proves which worker it comes from.
SET_TOKEN = "SELECT set_config('gpu_reactor.worker_token', $1::text, false)"
