"""`gpu-reactor check`: can this configuration work? One verdict per check.

database (reachable, login accepted), schema (every migration applied), listen (a NOTIFY
round-trip arrives; a transaction-mode pooler is detected and named), the tables shared
with an app (checks_shared.py: what on a seed database is in the way), worker database
(what the pods will use), provider (the pod list answers with the configured key: a key
Runpod refuses, 401, reads "API key rejected"; a valid key without access, 403, names what
it may not read), leader (whether a reactor leads this fleet now: information, never a
failure), and the GPU pools (checks_pools.py: POOLS_FILE, each pool's GPU types in Runpod's
catalog and its budget, routing and the fleet cap).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from reactor.aio import wait_event
from reactor.db.connect import connect
from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.migrate import check_schema
from reactor.db.pooler import POOLER_ERROR, POOLER_ERRORS, POOLER_HINT, looks_like_pooler, pooled
from reactor.db.queries import query
from reactor.errors import ReactorError
from reactor.logs import scrub
from reactor.ops import observe
from reactor.providers.base import FLEET_ENV
from reactor.settings import Settings

NOTIFY_WAIT_SEC = 2.0
PID_SAMPLES = 3

Verdict = Literal["PASS", "FAIL", "WARN", "SKIP"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str


def listen_verdict(
    *, received: bool, listener_pids: set[int], sender_pids: set[int], dsn: str
) -> CheckResult:
    """Judge the LISTEN round-trip, naming a transaction-mode pooler when one shows."""
    why = pooled(listener_pids, sender_pids)
    if received and why is None:
        return CheckResult("listen", "PASS", "a NOTIFY round-trip arrived on a LISTEN connection")
    if received:
        return CheckResult(
            "listen",
            "WARN",
            f"the NOTIFY arrived, but {why}: a pooler may drop LISTEN later; {POOLER_HINT}",
        )
    if why is None and looks_like_pooler(dsn):
        why = "the port/host is a known transaction-mode pooler"
    if why is not None:
        return CheckResult(
            "listen",
            "FAIL",
            f"NOTIFY did not arrive within {NOTIFY_WAIT_SEC:g}s; "
            f"{why}: LISTEN does not work through a "
            f"transaction-mode pooler; {POOLER_HINT}",
        )
    return CheckResult(
        "listen",
        "FAIL",
        f"LISTEN accepted but the NOTIFY did not arrive within "
        f"{NOTIFY_WAIT_SEC:g}s (a proxy or pooler in between?)",
    )


async def _connect_raw(dsn: str) -> asyncpg.Connection:
    # No prepared-statement cache: a transaction-mode pooler would break it before we
    # get to say what is wrong.
    return await asyncpg.connect(dsn, timeout=10, statement_cache_size=0)


async def _pid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(query("ops_backend_pid")))


async def check_listen(dsn: str) -> CheckResult:
    channel = f"gpu_reactor_check_{secrets.token_hex(4)}"
    arrived = asyncio.Event()
    listener_pids: set[int] = set()
    sender_pids: set[int] = set()
    listener = await _connect_raw(dsn)
    try:
        sender = await _connect_raw(dsn)
        try:
            for _ in range(PID_SAMPLES):  # interleaved: a pooler hands one backend around
                listener_pids.add(await _pid(listener))
                sender_pids.add(await _pid(sender))
            await listener.add_listener(channel, lambda *_args: arrived.set())
            await sender.execute(query("ops_notify"), channel, "check")
            await wait_event(arrived, NOTIFY_WAIT_SEC)
            listener_pids.add(await _pid(listener))
        finally:
            await sender.close()
    finally:
        listener.terminate()
    return listen_verdict(
        received=arrived.is_set(), listener_pids=listener_pids, sender_pids=sender_pids, dsn=dsn
    )


async def check_database(settings: Settings) -> list[CheckResult]:
    """database, schema, listen, leader: the later ones are skipped if the first fails."""
    try:
        conn = await connect(settings.dsn())
    except ReactorError as exc:
        skipped = [
            CheckResult(n, "SKIP", "database unreachable") for n in ("schema", "listen", "leader")
        ]
        return [CheckResult("database", "FAIL", str(exc)), *skipped]
    try:
        return await _database_checks(conn, settings)
    except TRANSIENT_DB_ERRORS as exc:
        skipped = [
            CheckResult(n, "SKIP", "database check failed") for n in ("schema", "listen", "leader")
        ]
        return [CheckResult("database", "FAIL", driver_error(exc)), *skipped]
    finally:
        if not conn.is_closed():
            await conn.close()


async def _database_checks(conn: asyncpg.Connection, settings: Settings) -> list[CheckResult]:
    info = await conn.fetchrow(query("ops_server_info"))
    out = [
        CheckResult(
            "database",
            "PASS",
            f"PostgreSQL {info['server_version']}, database {info['database']} as {info['login']}",
        )
    ]
    try:
        await check_schema(conn)
        out.append(CheckResult("schema", "PASS", "every migration is applied"))
    except ReactorError as exc:
        out.append(CheckResult("schema", "FAIL", str(exc)))
    from reactor.ops.checks_shared import check_shared  # it imports CheckResult from here

    out += await check_shared(conn, settings)
    holder = await observe.leader_holder(conn, settings.reactor_fleet)
    await conn.close()
    out.append(await _guard("listen", lambda: check_listen(settings.dsn())))
    who = (
        f"a reactor leads fleet '{settings.reactor_fleet}' (backend pid {holder['pid']})"
        if holder
        else f"no reactor leads fleet '{settings.reactor_fleet}' right now"
    )
    out.append(CheckResult("leader", "PASS", who))
    return out


async def check_worker_database(settings: Settings) -> CheckResult:
    configured = settings.worker_database_url is not None and bool(
        settings.worker_database_url.get_secret_value()
    )
    if settings.worker_protocol == "headless-wan2gp":
        return CheckResult(
            "worker-database",
            "PASS",
            "headless-wan2gp pods reach Supabase through WORKER_EXTRA_ENV, not a DSN",
        )
    if not configured:
        if settings.reactor_provider == "local":
            return CheckResult("worker-database", "PASS", "local workers use DATABASE_URL")
        return CheckResult(
            "worker-database",
            "FAIL",
            "WORKER_DATABASE_URL is not set: pods need a DSN (use the gpu_worker role)",
        )

    async def probe() -> CheckResult:
        conn = await connect(settings.worker_dsn())
        try:
            await conn.fetchval(query("ops_ping"))
        finally:
            await conn.close()
        return CheckResult(
            "worker-database", "PASS", "login accepted from here (pods must reach it too)"
        )

    return await _guard("worker-database", probe)


async def check_provider(settings: Settings) -> CheckResult:
    async def probe() -> CheckResult:
        from reactor.providers import make_provider  # the provider package loads lazily

        provider = make_provider(settings)
        try:
            async with asyncio.timeout(settings.runpod_request_timeout_sec * 3):
                pods = await provider.list_pods()
        finally:
            await provider.close()
        fleet = settings.reactor_fleet
        ours = [p for p in pods if p.belongs_to(fleet)]
        marked = [p for p in pods if p.env.get(FLEET_ENV) == fleet]
        return CheckResult(
            "provider",
            "PASS",
            f"{provider.name} answered: {len(pods)} pod(s) visible, {len(ours)} of "
            f"fleet '{fleet}'"
            + (
                f" ({len(marked) - len(ours)} with the fleet marker but not its name prefix)"
                if len(marked) > len(ours)
                else ""
            ),
        )

    return await _guard("provider", probe)


def driver_error(exc: BaseException) -> str:
    """One line about a driver error; a pooler's prepared-statement clash is named."""
    if isinstance(exc, POOLER_ERRORS):
        return POOLER_ERROR
    first = (str(exc).strip().splitlines() or [""])[0]
    return scrub(f"{type(exc).__name__}: {first}")[:300]


async def _guard(name: str, probe: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    try:
        return await probe()
    except ReactorError as exc:
        return CheckResult(name, "FAIL", scrub(str(exc)))
    except TRANSIENT_DB_ERRORS as exc:
        return CheckResult(name, "FAIL", driver_error(exc))


async def run_checks(settings: Settings) -> list[CheckResult]:
    results = await check_database(settings)
    results.append(await check_worker_database(settings))
    provider = await check_provider(settings)
    results.append(provider)
    from reactor.ops.checks_pools import check_pools  # it imports CheckResult from here

    results += await check_pools(settings, provider_ok=provider.verdict == "PASS")
    return results
