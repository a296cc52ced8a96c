"""The reactor's HTTP surface: /metrics, /status, /healthz, /readyz and the web console.

Read-only: every handler looks at what the reactor already knows (its metrics registry
and ReactorState); the only I/O is /readyz's ``SELECT 1`` (and the console's few reads,
reactor/http/console.py). Nothing here decides or acts.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.pool import GuardedPool
from reactor.db.queries import query
from reactor.errors import ConfigError
from reactor.http.auth import allowed
from reactor.http.console import add_console
from reactor.ops.status import (
    build_status,
    listener_hint,
    stale_worker_count,
    status_json,
    stuck_task_count,
)
from reactor.ops.status_pools import status_secrets

if TYPE_CHECKING:
    from reactor.engine.service import Reactor

log = logging.getLogger(__name__)

READY_DB_TIMEOUT = 1.0  # seconds /readyz waits for the database's SELECT 1
REACTOR_KEY: web.AppKey[Reactor] = web.AppKey("reactor")


def package_version() -> str:
    try:
        return version("gpu-reactor")
    except PackageNotFoundError:
        return "0+unknown"


def readiness(role: str, db_answers: bool, listener_connected: bool) -> tuple[bool, str]:
    """Ready means able to do this process's job: a standby needs the database; the leader
    also needs its LISTEN connection (without it events wait for the sweep)."""
    if role in ("starting", "stopping"):
        return False, role
    if not db_answers:
        return False, f"database did not answer SELECT 1 within {READY_DB_TIMEOUT:g}s"
    if role == "leader" and not listener_connected:
        return False, "leader without a LISTEN connection"
    return True, "ok"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _db_answers(pool: GuardedPool | None) -> bool:
    if pool is None:
        return False
    try:
        async with asyncio.timeout(READY_DB_TIMEOUT), pool.acquire() as conn:
            await conn.fetchval(query("ops_ping"))
    except TRANSIENT_DB_ERRORS:
        return False
    return True


# --- handlers --------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REACTOR_KEY].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def status(request: web.Request) -> web.Response:
    reactor = request.app[REACTOR_KEY]
    token = reactor.settings.reactor_http_token
    # The Bearer header, or the web console's session cookie (a signed-in browser).
    if not allowed(request, token.get_secret_value() if token else None):
        return web.Response(
            status=401,
            text="401: Authorization: Bearer <REACTOR_HTTP_TOKEN> required\n",
            headers={"WWW-Authenticate": 'Bearer realm="gpu-reactor"'},
        )
    provider = getattr(reactor.provider, "name", None)
    view = build_status(reactor.state, reactor.settings, provider=provider)
    body = status_json(view, status_secrets(reactor.state, reactor.settings))
    return web.Response(body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive", "role": request.app[REACTOR_KEY].state.role})


async def readyz(request: web.Request) -> web.Response:
    reactor = request.app[REACTOR_KEY]
    db = await _db_answers(reactor.pool)
    listener = reactor.state.listener.connected
    ready, reason = readiness(reactor.state.role, db, listener)
    return _json(
        {
            "ready": ready,
            "reason": reason,
            "role": reactor.state.role,
            "database": db,
            "listener_connected": listener,
            "hint": listener_hint(reactor.state, reactor.settings),
        },
        status=200 if ready else 503,
    )


# --- wiring ----------------------------------------------------------------------------


def _bind_metrics(reactor: Reactor) -> None:
    """Gauges evaluated at scrape time from the last snapshot, and the info metric."""
    m, settings = reactor.metrics, reactor.settings
    m.stale_workers.set_function(
        lambda: stale_worker_count(reactor.state.snapshot, settings, reactor.state.pools)
    )
    m.stuck_tasks.set_function(
        lambda: stuck_task_count(reactor.state.snapshot, settings, reactor.state.pools)
    )
    m.info.labels(
        version=package_version(), fleet=settings.reactor_fleet, provider=settings.reactor_provider
    ).set(1)


def build_app(reactor: Reactor) -> web.Application:
    app = web.Application()
    app[REACTOR_KEY] = reactor
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_console(app, reactor, version=package_version())  # GET / and the pages under it
    _bind_metrics(reactor)
    return app


async def start_http(reactor: Reactor) -> web.AppRunner:
    """Serve on REACTOR_HTTP_HOST:REACTOR_HTTP_PORT; the caller owns ``runner.cleanup()``."""
    host, port = reactor.settings.reactor_http_host, reactor.settings.reactor_http_port
    runner = web.AppRunner(build_app(reactor), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve HTTP on {host}:{port} "
            f"(REACTOR_HTTP_HOST / REACTOR_HTTP_PORT): {exc.strerror or exc}"
        ) from exc
    log.info(
        "http_listening",
        extra={
            "host": host,
            "port": port,
            "status_token": reactor.settings.reactor_http_token is not None,
        },
    )
    return runner
