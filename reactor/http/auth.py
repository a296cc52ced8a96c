"""Who may read the reactor's HTTP surface, and the headers every answer carries.

With ``REACTOR_HTTP_TOKEN`` set, /status wants ``Authorization: Bearer <token>``; the web
console takes that header too, or the session cookie its login form sets. The cookie
holds an HMAC of the token, never the token itself: it is HttpOnly (no script reads it),
SameSite=Strict, and stops working the moment the token changes. Nothing here writes
anything but that cookie; the console is read-only.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from urllib.parse import quote, urlsplit

from aiohttp import web

SESSION_COOKIE = "gpu_reactor_console"
SESSION_MAX_AGE_SEC = 12 * 3600
_SESSION_CONTEXT = b"gpu-reactor console session v1"

# Scripts, styles, images and connections only from the reactor itself; no inline code,
# no frames, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def authorized(header: str | None, token: str | None) -> bool:
    """The Bearer header /status accepts (any header when no token is set)."""
    if not token:
        return True
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).hexdigest()


def allowed(request: web.Request, token: str | None) -> bool:
    """The Bearer header or the console's session cookie."""
    if not token:
        return True
    if request.headers.get("Authorization"):
        return authorized(request.headers["Authorization"], token)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path on this server only (no open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target:
        return "/"
    return target


def login_redirect(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, /status and /metrics included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# --- the login form ------------------------------------------------------------------

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gpu-reactor: sign in</title>
<link rel="stylesheet" href="/static/console.css"></head>
<body class="login"><main id="main">
<h1>gpu-reactor</h1>
<form method="post" action="/login" class="login-form">
<p>This reactor's console needs its <code>REACTOR_HTTP_TOKEN</code>.</p>
{error}
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def login_page(next_path: str, error: str | None = None, status: int = 200) -> web.Response:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = _LOGIN_PAGE.format(error=shown, next=html.escape(safe_next(next_path)))
    return web.Response(
        text=body, status=status, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def login_handlers(token: str | None) -> tuple[web.RouteDef, ...]:
    async def show(request: web.Request) -> web.StreamResponse:
        target = safe_next(request.query.get("next"))
        if allowed(request, token):
            raise web.HTTPSeeOther(target)
        return login_page(target)

    async def submit(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = safe_next(str(form.get("next", "/")))
        given = str(form.get("token", ""))
        if not token:
            raise web.HTTPSeeOther(target)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return login_page(target, "That is not this reactor's token.", status=401)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(token),
            max_age=SESSION_MAX_AGE_SEC,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def logout(request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    return (
        web.get("/login", show),
        web.post("/login", submit),
        web.post("/logout", logout),
    )
