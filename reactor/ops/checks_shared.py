"""`gpu-reactor check` on the tables gpu-reactor shares with an app (issue 14).

On the seed system's database (banodoco/Reigh's schema) several things stand in the
reactor's way; each check names one and its fix: the workers status CHECK, a NOT NULL
``instance_type`` without a default, row level security the reactor's login does not
bypass, the seed's timing trigger, and under headless-wan2gp the count function the
seed orchestrator scales on. ``judge`` is pure (a table test drives it); ``check_shared``
reads the facts in one query (sql/queries.sql ops_shared_tables).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg

from reactor.db.queries import query
from reactor.domain.model import WorkerStatus
from reactor.ops.checks import CheckResult
from reactor.settings import Settings

# What a worker row's status must be able to hold: gpu-reactor's statuses, and 'crashed',
# which the seed's worker writes when it exits.
WANTED_STATUSES = (*(s.value for s in WorkerStatus), "crashed")
_LISTED = re.compile(r"^CHECK \(\(status = ANY \(ARRAY\[('[^']*'::text(, )?)+\]\)\)\)$")
COUNT_FUNCTION = "count_eligible_tasks_service_role"
# gpu-reactor's functions that write tasks: each must pass the seed's timing trigger.
TASK_WRITERS = (
    "func_claim_available_task",
    "func_mark_task_complete",
    "func_mark_task_failed",
    "func_requeue_task",
    "func_reset_orphaned_tasks",
)


def _status_check(definition: str | None) -> CheckResult:
    name = "workers-status"
    if definition is None:
        return CheckResult(name, "PASS", "workers has no status CHECK of its own")
    if not _LISTED.match(definition):
        return CheckResult(
            name,
            "WARN",
            f"workers_status_check is {definition!r}, not a list of statuses: migrate cannot "
            f"widen it; make sure it admits {', '.join(WANTED_STATUSES)}",
        )
    admitted = set(re.findall(r"'([^']*)'", definition))
    missing = [s for s in WANTED_STATUSES if s not in admitted]
    if not missing:
        return CheckResult(name, "PASS", "workers_status_check admits every status written")
    return CheckResult(
        name,
        "FAIL",
        f"workers_status_check refuses {', '.join(missing)} (gpu-reactor writes spawning, "
        "terminating and error; the seed's worker writes crashed); fix: gpu-reactor migrate "
        "widens it, keeping every status it admits now (see gpu_reactor.shared_changes)",
    )


def _instance_type(blocks: bool) -> CheckResult:
    if not blocks:
        return CheckResult(
            "workers-instance-type", "PASS", "a new worker row needs no instance_type"
        )
    return CheckResult(
        "workers-instance-type",
        "FAIL",
        "workers.instance_type is NOT NULL without a default, so the reactor cannot write a "
        "spawn intent; fix: gpu-reactor migrate gives it the default 'gpu-reactor'",
    )


def _rls(tables: list[str], login: str, bypasses: bool) -> CheckResult:
    if not tables or bypasses:
        detail = (
            f"login {login} bypasses row level security"
            if tables
            else "no row level security in the reactor's way on tasks and workers"
        )
        return CheckResult("row-level-security", "PASS", detail)
    return CheckResult(
        "row-level-security",
        "FAIL",
        f"row level security is on for {', '.join(tables)} and login {login} is neither their "
        "owner (without FORCE), a superuser nor BYPASSRLS: the reactor would see no rows; fix: "
        f"connect as the tables' owner (Supabase: postgres), or ALTER ROLE {login} BYPASSRLS",
    )


def _timing_trigger(present: bool, writers_without_claim: list[str]) -> CheckResult:
    name = "timing-trigger"
    if not present:
        return CheckResult(name, "PASS", "no prevent_timing_manipulation trigger on tasks")
    if writers_without_claim:
        return CheckResult(
            name,
            "FAIL",
            "the seed's prevent_timing_manipulation trigger refuses task writes without the "
            f"service-role claim, and gpu_reactor.{', '.join(writers_without_claim)} do not "
            "carry it (or do not exist yet); fix: "
            "gpu-reactor migrate",
        )
    return CheckResult(
        name,
        "PASS",
        "prevent_timing_manipulation is passed: gpu-reactor's task writes run with "
        "request.jwt.claim.role = service_role, as the seed's service role does",
    )


def _count_function(present: bool, pools_file: bool = False) -> CheckResult:
    if present and pools_file:  # demand is routed by type: the seed's count cannot be
        return CheckResult(
            "count-function",
            "WARN",
            f"{COUNT_FUNCTION} exists but POOLS_FILE routes gpu-reactor's own count by task "
            "type instead: a Queued task the seed's claim never gives a GPU worker (run_type "
            "api, a user without credits) is demand in a pool that lists its type and keeps "
            "a GPU for it; list only GPU task types in the pools (not '*')",
        )
    if present:
        return CheckResult(
            "count-function",
            "PASS",
            f"{COUNT_FUNCTION} exists (what the seed orchestrator scales on)",
        )
    return CheckResult(
        "count-function",
        "WARN",
        f"{COUNT_FUNCTION} does not exist: demand cannot be counted the seed's way; fix: "
        "load the app's migration that defines it, or set DEMAND_SQL",
    )


def judge(facts: Mapping[str, Any], settings: Settings) -> list[CheckResult]:
    """The verdicts on what ``ops_shared_tables`` answered."""
    out = [
        _status_check(facts["status_check"]),
        _instance_type(bool(facts["instance_type_blocks"])),
        _rls(list(facts["rls_in_the_way"]), facts["login"], bool(facts["bypasses_rls"])),
        _timing_trigger(
            bool(facts["timing_trigger"]),
            [w for w in TASK_WRITERS if w not in facts["writers_with_claim"]],
        ),
    ]
    if settings.worker_protocol == "headless-wan2gp":
        out.append(_count_function(bool(facts["count_function"]), bool(settings.pools_file)))
    return out


async def check_shared(conn: asyncpg.Connection, settings: Settings) -> list[CheckResult]:
    return judge(await conn.fetchrow(query("ops_shared_tables")), settings)
