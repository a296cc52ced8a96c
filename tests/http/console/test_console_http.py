"""The console over HTTP (no browser): a real reactor, real Postgres, local stand-in pods.

Token enforcement and the login cookie, the security headers, the event stream and its
one-build-for-every-page promise, and the drill-down pages' escaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from reactor.engine.service import Reactor
from reactor.http.auth import SESSION_COOKIE
from reactor.http.console import FEED_KEY
from reactor.http.server import start_http
from reactor.settings import Settings
from tests.http.conftest import TOKEN, base_url, reactor_settings, serving
from tests.util import wait_until

BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
PARAM_SECRET = "param-value-never-shown-5e1f"


async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """Server-sent events as (name, parsed data)."""
    name, data = "", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and name:
            yield name, json.loads(data)
            name, data = "", ""


async def _next_state(stream: AsyncIterator[tuple[str, Any]]) -> dict[str, Any]:
    async for name, data in stream:
        if name == "state":
            return data  # type: ignore[no-any-return]
    raise AssertionError("the event stream ended")


@contextlib.asynccontextmanager
async def serving_app(settings: Settings) -> AsyncIterator[tuple[Reactor, web.Application]]:
    """Like tests.http.conftest.serving, also giving the HTTP app (to read its feed)."""
    reactor = Reactor(settings)
    runner = await start_http(reactor)
    task = asyncio.create_task(reactor.run(), name="reactor-under-test")
    try:
        st = reactor.state
        await wait_until(
            lambda: (
                task.done() or (st.role == "leader" and st.reconciles and st.listener.connected)
            ),
            timeout=15,
            what="the reactor to lead",
        )
        if task.done():
            task.result()
        yield reactor, runner.app
    finally:
        reactor.stop_event.set()
        try:
            await asyncio.wait_for(task, 20)
        finally:
            await runner.cleanup()


async def test_the_token_guards_the_console_and_the_login_sets_an_httponly_cookie(
    db_dsn: str, http: aiohttp.ClientSession
) -> None:
    settings = reactor_settings(db_dsn)
    url = base_url(settings)
    async with serving(settings):
        async with http.get(f"{url}/", headers=HTML, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=")
        for path in ("/console/events", "/console/state", "/workers/x", "/tasks/x"):
            async with http.get(f"{url}{path}") as resp:
                assert resp.status == 401, path
        async with http.get(f"{url}/console/state", headers={"Authorization": "Bearer no"}) as r:
            assert r.status == 401
        async with http.get(f"{url}/console/state", headers=BEARER) as resp:
            assert resp.status == 200 and (await resp.json())["role"] == "leader"
        async with http.get(f"{url}/login") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'type="password"' in page
            assert "script" not in page  # the form needs no code
            assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
        form = {"token": "wrong", "next": "/"}
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 401 and SESSION_COOKIE not in resp.cookies
        form = {"token": TOKEN, "next": "//evil.example/"}
        async with http.post(f"{url}/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"
            cookie = resp.cookies[SESSION_COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert TOKEN not in cookie.value
        jar = {SESSION_COOKIE: cookie.value}
        async with aiohttp.ClientSession(cookies=jar) as signed_in:
            async with signed_in.get(f"{url}/") as resp:
                page = await resp.text()
                assert resp.status == 200 and 'src="/static/console.js"' in page
                assert "<script>" not in page  # no inline script anywhere
            async with signed_in.get(f"{url}/status") as resp:
                assert resp.status == 200  # a signed-in browser may follow the /status link
            async with signed_in.post(f"{url}/logout", allow_redirects=False) as resp:
                assert resp.status == 303
                assert resp.cookies[SESSION_COOKIE].value == ""


async def test_every_answer_carries_the_security_headers(
    db_dsn: str, http: aiohttp.ClientSession
) -> None:
    settings = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    url = base_url(settings)
    async with serving(settings):
        for path in ("/", "/status", "/metrics", "/static/console.js", "/static/console.css"):
            async with http.get(f"{url}{path}") as resp:
                assert resp.status == 200, path
                csp = resp.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{url}/static/console.html") as resp:
            assert resp.status == 404
        async with http.get(f"{url}/static/console.js") as resp:
            etag = resp.headers["ETag"]
        async with http.get(f"{url}/static/console.js", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304


async def test_ten_open_pages_share_one_build_per_change_and_one_database_read(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    settings = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    url = base_url(settings)
    async with serving_app(settings) as (_, app), contextlib.AsyncExitStack() as stack:
        feed = app[FEED_KEY]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        streams = []
        for _ in range(10):
            resp = await stack.enter_async_context(session.get(f"{url}/console/events"))
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            stream = _events(resp)
            name, history = await anext(stream)
            assert name == "history" and history["fields"][1] == "queued"
            await _next_state(stream)
            streams.append(stream)
        assert feed.subscribers == 10
        builds, reads = feed.builds, feed.totals_reads
        await conn.execute("INSERT INTO tasks (task_type, params) VALUES ('echo', '{}')")
        for stream in streams:
            state = await _next_state(stream)
            while not state["queue"] or state["workers"]["total"] == 0:
                state = await _next_state(stream)
        # Each page saw the spawn; the views were built per change, not per page.
        changes = feed.builds - builds
        assert 1 <= changes <= 6, changes
        assert feed.totals_reads - reads <= 3  # at most one a second, for all ten


async def test_drill_down_pages_escape_everything_and_never_show_params(
    db_dsn: str, conn: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    settings = reactor_settings(db_dsn)
    url = base_url(settings)
    async with serving(settings) as reactor:
        task_id = str(
            await conn.fetchval(
                "INSERT INTO tasks (task_type, params, error_message) "
                "VALUES ('<img src=x onerror=alert(1)>', jsonb_build_object('k', $1::text), "
                "'<b>boom</b>') RETURNING id",
                PARAM_SECRET,
            )
        )
        snap = await wait_until(
            lambda: (
                reactor.state.snapshot
                if reactor.state.snapshot and reactor.state.snapshot.workers
                else None
            ),
            what="a spawned worker",
        )
        worker_id = snap.workers[0].id
        async with http.get(f"{url}/tasks/{task_id}", headers=BEARER) as resp:
            page = await resp.text()
            assert resp.status == 200
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img" not in page
        assert "&lt;b&gt;boom&lt;/b&gt;" in page and "<b>boom" not in page
        assert PARAM_SECRET not in page and "<script" not in page
        async with http.get(f"{url}/workers/{worker_id}", headers=BEARER) as resp:
            page = await resp.text()
            assert resp.status == 200
        assert worker_id in page and "tasks need" in page  # the spawn and its reason
        missing = f"/tasks/{'0' * 8}-0000-4000-8000-{'0' * 12}"
        for path in ("/workers/nobody", "/tasks/not-a-uuid", missing):
            async with http.get(f"{url}{path}", headers=BEARER) as resp:
                assert resp.status == 404, path
        async with http.get(f"{url}/workers/%3Cscript%3E", headers=BEARER) as resp:
            page = await resp.text()
            assert resp.status == 404 and "<script>" not in page


async def test_a_standby_says_so_and_names_the_leaders_session(
    db_dsn: str, http: aiohttp.ClientSession
) -> None:
    first = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    second = reactor_settings(db_dsn, REACTOR_HTTP_TOKEN=None)
    async with serving(first), serving(second, lead=False):

        async def standby_state() -> dict[str, Any] | None:
            async with http.get(f"{base_url(second)}/console/state") as resp:
                state = await resp.json()
            return state if state["leader_checked"] else None

        state = await wait_until(standby_state, what="the standby's console to look for a leader")
        assert state["role"] == "standby" and state["workers"]["total"] == 0
        assert state["leader"] is not None and state["leader"]["pid"]
        names = [a["name"] for a in state["alerts"]]
        assert "standby" in names and "no_leader" not in names
