"""Operator actions from the CLI: spawn, drain and terminate workers, create test tasks.

Workers are changed through the reactor's own Executor, so a spawn from the CLI writes
the same intent row, calls the same provider code and leaves the same records as one the
reactor decides. A running reactor sees the change through the workers trigger's NOTIFY.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from reactor.db.pooler import POOLER_ERROR, POOLER_ERRORS
from reactor.db.queries import query
from reactor.domain.actions import Action, Cause, Drain, Retire, Spawn
from reactor.domain.model import LIVE_STATUSES, WorkerStatus
from reactor.domain.pools import Pools
from reactor.engine.executor import Executor
from reactor.engine.metrics import Metrics
from reactor.engine.snapshot import read_snapshot
from reactor.engine.state import ActionRecord, ReactorState
from reactor.errors import ConfigError, DatabaseError, ReactorError
from reactor.ops import observe
from reactor.pools_file import load_pools
from reactor.providers.base import Pod, PodSpec, Provider
from reactor.settings import Settings


class UnknownWorker(ReactorError):
    """No worker row has this id."""


class Refused(ReactorError):
    """The action would break a rule or was not confirmed; nothing was done."""


class BadInput(ReactorError):
    """A command-line value is unusable (bad JSON, out of range)."""


class DatabaseOnly:
    """Stands in for the provider where an action writes only the database (drain), so
    draining works without provider credentials."""

    name = "none"

    async def create(self, spec: PodSpec) -> Pod:
        raise ConfigError("this command does not talk to the provider")

    async def terminate(self, pod_id: str) -> None:
        raise ConfigError("this command does not talk to the provider")

    async def get(self, pod_id: str) -> Pod | None:
        raise ConfigError("this command does not talk to the provider")

    async def list_pods(self) -> list[Pod]:
        return []

    async def estimated_price(self) -> float | None:
        return None

    async def close(self) -> None:
        return None


@asynccontextmanager
async def executor_for(
    settings: Settings, *, provider: bool = True, pools: Pools | None = None
) -> AsyncIterator[Executor]:
    """An Executor on a small pool, with the configured provider (or none)."""
    async with observe.database(settings):  # readable connect errors + schema check
        pass
    chosen: Provider
    if provider:
        from reactor.providers import make_provider

        chosen = make_provider(settings)
    else:
        chosen = DatabaseOnly()
    pool = await asyncpg.create_pool(
        settings.dsn(),
        min_size=1,
        max_size=4,
        timeout=10,
        server_settings={"application_name": "gpu-reactor-cli"},
    )
    try:
        yield Executor(
            pool=pool,
            provider=chosen,
            settings=settings,
            metrics=Metrics(),
            state=ReactorState(role="cli"),
            pools=pools,
        )
    except POOLER_ERRORS as exc:
        raise DatabaseError(POOLER_ERROR) from exc
    finally:
        await chosen.close()
        await pool.close()


def _now() -> datetime:
    """The clock for an operator's action (the reactor's run on the database's)."""
    return datetime.now(UTC)


def spawn_room(settings: Settings, live: int, burn: float, price: float) -> tuple[int, str]:
    """How many more workers the caps allow, and which cap binds."""
    room, why = settings.max_active_gpus - live, f"MAX_ACTIVE_GPUS={settings.max_active_gpus}"
    cap = settings.max_hourly_spend_usd
    if cap is not None and price > 0:
        affordable = math.floor((cap - burn) / price + 1e-9)
        if affordable < room:
            room, why = affordable, f"MAX_HOURLY_SPEND_USD={cap:g} at ~${price:.2f}/h per worker"
    return max(room, 0), why


async def spawn(
    settings: Settings, count: int, *, force: bool = False, pool: str | None = None
) -> list[ActionRecord]:
    if count < 1:
        raise BadInput("--count must be at least 1")
    if settings.reactor_provider == "local":
        raise Refused(
            "with REACTOR_PROVIDER=local a pod is a process of the command that "
            "starts it and would end with this command: queue tasks instead "
            "('gpu-reactor tasks create') and let the running reactor spawn"
        )
    pools = load_pools(settings)
    chosen = pools.get(pool) if pool is not None else pools.first
    if chosen is None:
        where = f"POOLS_FILE has {', '.join(pools.names)}" if pools.routed else "no POOLS_FILE"
        raise BadInput(f"no pool named {pool!r} ({where})")
    async with executor_for(settings, pools=pools) as ex, ex.pool.acquire() as conn:
        snap = await read_snapshot(conn, arm=False, task_types=settings.task_types)
        await ex.refresh_price(snap.workers)
        price = ex.gates[chosen.name].expected_price
        mine = [w for w in snap.workers if pools.pool_of(w) is chosen]
        room, why = spawn_room(chosen.settings, len(mine), sum(w.cost_per_hr for w in mine), price)
        if pools.routed:  # the environment's caps hold across pools
            fleet = spawn_room(settings, len(snap.workers), snap.hourly_burn, price)
            if fleet[0] < room:
                room, why = fleet[0], f"the fleet's {fleet[1]}"
        if count > room and not force:
            raise Refused(
                f"{len(snap.workers)} live worker(s) and {why} leave room for {room}; "
                f"asked for {count} (pass --force to go over the cap)"
            )
        reason = "requested by operator (gpu-reactor workers spawn)"
        spawns: list[Action] = [
            Spawn(reason=reason, cause=Cause.OPERATOR, pool=chosen.name) for _ in range(count)
        ]
        applied = await ex.apply(spawns, snap.now)
        return applied.records


async def _live_worker(settings: Settings, worker_id: str, verb: str) -> dict[str, Any]:
    async with observe.database(settings) as conn:
        row = await observe.worker_row(conn, worker_id)
        if row is not None:
            running = await conn.fetch(query("running_tasks"))
            row["tasks"] = [str(r["id"]) for r in running if r["worker_id"] == worker_id]
    if row is None:
        raise UnknownWorker(
            f"no worker with id '{worker_id}' ('gpu-reactor workers list' shows the live ones)"
        )
    if row["status"] not in LIVE_STATUSES:
        raise Refused(
            f"worker '{worker_id}' has already ended ({row['status']}): nothing to {verb}"
        )
    return row


async def drain(settings: Settings, worker_id: str) -> ActionRecord:
    row = await _live_worker(settings, worker_id, "drain")
    if row["status"] == WorkerStatus.TERMINATING:
        raise Refused(f"worker '{worker_id}' is already draining")
    reason = "requested by operator (gpu-reactor workers drain)"
    async with executor_for(settings, provider=False) as ex:
        drain = Drain(worker_id, reason=reason, cause=Cause.OPERATOR)
        [record] = (await ex.apply([drain], _now())).records
    return record


async def terminate(
    settings: Settings, worker_id: str, confirm: Callable[[dict[str, Any]], bool]
) -> ActionRecord:
    """End a live worker now: its row, its tasks (requeued) and its pod."""
    row = await _live_worker(settings, worker_id, "terminate")
    if not confirm(row):
        raise Refused(f"not confirmed: worker '{worker_id}' left running")
    action = Retire(
        worker_id,
        row["pod_id"],
        status=WorkerStatus.TERMINATED,
        cause=Cause.OPERATOR,
        reason="terminated by operator (gpu-reactor workers terminate)",
    )
    async with executor_for(settings) as ex:
        [record] = (await ex.apply([action], _now())).records
    return record


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def parse_params(text: str) -> str:
    """Validate --params (one JSON object, as RFC 8259 has it: no NaN or Infinity) and
    return the text as given, for the jsonb column to read: re-encoding it could change
    it (an integer beyond 64 bits would come back as a float)."""
    try:
        # Numbers are only checked for syntax, never converted (no size limit, no rounding).
        value = json.loads(text, parse_int=str, parse_float=str, parse_constant=_not_json)
    except ValueError as exc:
        raise BadInput(f"--params is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("--params is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadInput(f"--params must be a JSON object, got {type(value).__name__}: {text[:60]}")
    return text


async def create_tasks(
    settings: Settings, task_type: str, params: str, *, count: int, priority: int
) -> list[str]:
    """Insert ``count`` Queued tasks in one statement (one doorbell ring); return ids."""
    if count < 1:
        raise BadInput("--count must be at least 1")
    if not task_type.strip():
        raise BadInput("--type must not be empty")
    body = parse_params(params)
    async with observe.database(settings) as conn:
        rows = await conn.fetch(query("ops_create_tasks"), task_type, body, priority, count)
    return [r["id"] for r in rows]


def describe(record: ActionRecord) -> str:
    """One line for a person about one executed action."""
    who = record.worker_id or record.pod_id or "-"
    pod = f" pod {record.pod_id}" if record.pod_id and record.worker_id else ""
    detail = f" ({record.detail})" if record.detail else ""
    return f"{record.kind} {record.outcome}: {who}{pod}{detail}"
