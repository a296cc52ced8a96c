"""The web console: ``GET /`` on the reactor's HTTP server, live, read-only.

Routes (all behind REACTOR_HTTP_TOKEN when it is set: the Bearer header or the login
form's cookie, reactor/http/auth.py):

- ``/``: the page (reactor/http/static/console.html, .css, .js; nothing from elsewhere);
- ``/console/events``: server-sent events, a ``history`` event (the last hour's chart
  points) and then a ``state`` event per change, the same bytes for every open page
  (reactor/http/console_feed.py);
- ``/console/state``: the latest ``state`` document as JSON;
- ``/workers/{id}`` and ``/tasks/{id}``: the drill-down pages (console_pages.py);
- ``/static/...``: the page's script and style sheet, served from the package.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from reactor.http import console_pages
from reactor.http.auth import add_security_headers, allowed, login_handlers, login_redirect
from reactor.http.console_feed import ConsoleFeed
from reactor.http.console_html import LOGOUT_FORM

if TYPE_CHECKING:
    from reactor.engine.service import Reactor

KEEPALIVE_SEC = 15.0  # a comment line on an idle event stream (proxies, dead clients)
RETRY_MS = 2000  # how soon a browser reconnects a broken event stream
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",  # the page shell, served only as /
}

FEED_KEY: web.AppKey[ConsoleFeed] = web.AppKey("console_feed")
CLOSING_KEY: web.AppKey[asyncio.Event] = web.AppKey("console_closing")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _static_dir() -> resources.abc.Traversable:
    return resources.files("reactor.http").joinpath("static")


def load_assets() -> dict[str, Asset]:
    assets = {}
    for entry in _static_dir().iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            assets[entry.name] = Asset(body, STATIC_TYPES[suffix], etag)
    return assets


def _token(request: web.Request) -> str | None:
    reactor: Reactor = request.app[console_pages.REACTOR]
    token = reactor.settings.reactor_http_token
    return token.get_secret_value() if token else None


def _refuse(request: web.Request) -> web.StreamResponse:
    """A browser goes to the login form; a client that sent a header gets a 401."""
    if request.headers.get("Authorization") or not request.headers.get("Accept", "").startswith(
        "text/html"
    ):
        return web.Response(
            status=401,
            text="401: sign in at /login, or send Authorization: Bearer <REACTOR_HTTP_TOKEN>\n",
            headers={"WWW-Authenticate": 'Bearer realm="gpu-reactor"'},
        )
    raise login_redirect(request)


@web.middleware
async def require_token(request: web.Request, handler: console_pages.Handler) -> web.StreamResponse:
    """The console's routes need the token; /status, /metrics and the probes keep theirs."""
    guarded = request.path == "/" or request.path.startswith(("/console/", "/workers/", "/tasks/"))
    if guarded and not allowed(request, _token(request)):
        return _refuse(request)
    return await handler(request)


# --- handlers --------------------------------------------------------------------------


async def page(request: web.Request) -> web.StreamResponse:
    reactor: Reactor = request.app[console_pages.REACTOR]
    shell = request.app[ASSETS_KEY]["console.html"].body.decode()
    fleet = html.escape(reactor.settings.reactor_fleet)
    body = shell.replace("__FLEET__", fleet).replace(
        "__LOGOUT__", "" if _token(request) is None else LOGOUT_FORM
    )
    return web.Response(text=body, content_type="text/html", headers={"Cache-Control": "no-store"})


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    feed, closing = request.app[FEED_KEY], request.app[CLOSING_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    try:
        with feed.subscription():
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            await response.write(_event("history", feed.history()))
            version, payload = feed.current()
            await response.write(_event("state", payload))
            while not closing.is_set():
                if await feed.wait_newer(version, KEEPALIVE_SEC):
                    version, payload = feed.version, feed.payload
                    await response.write(_event("state", payload))
                elif not closing.is_set():
                    await response.write(b": keep-alive\n\n")
    except ConnectionError:
        pass  # the page went away
    return response


async def state(request: web.Request) -> web.Response:
    payload = await request.app[FEED_KEY].latest()
    return web.Response(
        body=payload, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


ASSETS_KEY: web.AppKey[dict[str, Asset]] = web.AppKey("console_assets")


async def static(request: web.Request) -> web.Response:
    asset = request.app[ASSETS_KEY].get(request.match_info["name"])
    if asset is None or request.match_info["name"].endswith(".html"):
        raise web.HTTPNotFound()
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)


# --- wiring ----------------------------------------------------------------------------


def add_console(app: web.Application, reactor: Reactor, *, version: str) -> None:
    """Register the console's routes, its auth middleware, the security headers on every
    answer, and the feed's task (owned by the app: it ends with the HTTP server)."""
    token = reactor.settings.reactor_http_token
    app[console_pages.REACTOR] = reactor
    app[ASSETS_KEY] = load_assets()
    app[FEED_KEY] = feed = ConsoleFeed(reactor, version=version)
    app[CLOSING_KEY] = closing = asyncio.Event()
    app.middlewares.append(require_token)
    app.on_response_prepare.append(add_security_headers)
    app.add_routes(login_handlers(token.get_secret_value() if token else None))
    app.router.add_get("/", page)
    app.router.add_get("/console/events", events)
    app.router.add_get("/console/state", state)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/workers/{worker_id}", console_pages.worker_page)
    app.router.add_get("/tasks/{task_id}", console_pages.task_page)

    async def feed_task(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(closing), name="console-feed")
        yield
        closing.set()
        await asyncio.wait({task}, timeout=5)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)

    async def stop_streams(app: web.Application) -> None:
        closing.set()
        feed.wake()

    app.cleanup_ctx.append(feed_task)
    app.on_shutdown.append(stop_streams)
