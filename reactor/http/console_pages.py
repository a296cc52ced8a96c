"""The console's drill-down pages: one worker, one task. HTML rendered here, escaped.

Each page view runs its named queries once (sql/queries.sql, ``console_*``) and adds
what only this reactor's memory knows: the worker's health and its pod as the last
sweep saw it, the actions the reactor took about it, and which workers it saw holding a
task (reactor/engine/history.py). Task params are never read. Every value goes through
``e()`` (html.escape); the pages carry no script at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.db.queries import query
from reactor.http.console_detail import (
    task_facts,
    task_holders,
    task_related_actions,
    worker_facts,
    worker_pod,
    worker_seen_tasks,
    worker_timeline,
)
from reactor.http.console_html import e, facts_html, page_html, table_html, task_link
from reactor.ops.observe import plain

if TYPE_CHECKING:
    from reactor.engine.service import Reactor

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REACTOR: web.AppKey[Reactor] = web.AppKey("console_reactor")
PAGE_DB_TIMEOUT_SEC = 5.0
READ_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, TimeoutError)
WORKER_TASKS_SHOWN = 100


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def _problem(title: str, message: str, status: int, signed_in: bool) -> web.Response:
    return _html(page_html(title, e(title), f"<p>{e(message)}</p>", signed_in=signed_in), status)


def _signed_in(reactor: Reactor) -> bool:
    return reactor.settings.reactor_http_token is not None


async def _fetch(
    reactor: Reactor, reads: Callable[[Any], Awaitable[Any]]
) -> tuple[Any, str | None]:
    """Run ``reads(conn)`` on one pooled connection; a database problem is a message."""
    if reactor.pool is None:
        return None, "the reactor has no database connection yet"
    try:
        async with asyncio.timeout(PAGE_DB_TIMEOUT_SEC), reactor.pool.acquire() as conn:
            return await reads(conn), None
    except READ_ERRORS as exc:
        return None, f"the database did not answer: {str(exc)[:200] or type(exc).__name__}"


# --- a worker ---------------------------------------------------------------------------


async def worker_page(request: web.Request) -> web.Response:
    reactor = request.app[REACTOR]
    worker_id = request.match_info["worker_id"]
    signed_in = _signed_in(reactor)

    async def reads(conn: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        row = await conn.fetchrow(query("console_worker"), worker_id)
        if row is None:
            return None, []
        tasks = await conn.fetch(
            query("console_worker_tasks"), worker_id, row["created_at"], WORKER_TASKS_SHOWN
        )
        return plain(row), [plain(t) for t in tasks]

    found, error = await _fetch(reactor, reads)
    if error:
        return _problem("database unavailable", error, 503, signed_in)
    row, tasks = found
    if row is None:
        return _problem("no such worker", f"no worker named {worker_id!r}", 404, signed_in)
    state = reactor.state
    body = (
        facts_html(worker_facts(row, state, reactor.settings))
        + "<h2>Pod</h2>"
        + worker_pod(row, state)
        + table_html(
            "History", ["when", "what", "why"], worker_timeline(row, state), "nothing recorded"
        )
        + table_html(
            "Tasks",
            ["task", "type", "status", "attempt", "started", "finished", "took", "error"],
            [_task_row(t) for t in tasks],
            "no task recorded on this worker",
        )
        + table_html(
            "Tasks this reactor saw it hold",
            ["task", "attempt", "started", "first seen"],
            worker_seen_tasks(worker_id, state),
            "none seen by this reactor since it started",
        )
    )
    heading = f'worker <span class="mono">{e(worker_id)}</span>'
    return _html(page_html(f"worker {worker_id}", heading, body, signed_in=signed_in))


def _took(started: datetime | None, ended: datetime | None) -> str:
    if started is None or ended is None:
        return "-"
    return f"{(ended - started).total_seconds():.1f}s"


def _task_row(t: dict[str, Any]) -> list[str]:
    return [
        task_link(t["id"]),
        e(t["task_type"]),
        e(t["status"]),
        e(f"{t['attempts']} of {t['max_attempts']}"),
        e(t["generation_started_at"]),
        e(t["generation_processed_at"]),
        e(_took(t["generation_started_at"], t["generation_processed_at"])),
        e(t["error_message"]),
    ]


# --- a task -----------------------------------------------------------------------------


async def task_page(request: web.Request) -> web.Response:
    reactor = request.app[REACTOR]
    raw = request.match_info["task_id"]
    signed_in = _signed_in(reactor)
    try:
        task_id = str(uuid.UUID(raw))
    except ValueError:
        return _problem("no such task", f"{raw!r} is not a task id (a UUID)", 404, signed_in)

    async def reads(conn: Any) -> dict[str, Any] | None:
        row = await conn.fetchrow(query("console_task"), task_id)
        return plain(row) if row is not None else None

    row, error = await _fetch(reactor, reads)
    if error:
        return _problem("database unavailable", error, 503, signed_in)
    if row is None:
        return _problem("no such task", f"no task with id {task_id}", 404, signed_in)
    state = reactor.state
    body = (
        facts_html(task_facts(row))
        + table_html(
            "Workers that held it",
            ["worker", "attempt", "started", "first seen by this reactor"],
            task_holders(row, state),
            "no worker has held it",
        )
        + table_html(
            "What the reactor did about it",
            ["when", "action", "outcome", "worker", "why", "detail"],
            task_related_actions(row, state),
            "nothing in this reactor's recent actions",
        )
    )
    heading = f'task <span class="mono">{e(task_id)}</span>'
    return _html(page_html(f"task {task_id}", heading, body, signed_in=signed_in))
