"""What the fake Runpod v2 server puts on the wire: answers, problem bodies, spoilt bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

NO_CAPACITY = (
    "There are no longer any instances available with the requested "
    "specifications. Please refresh and try again."
)

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-able; None: no body (204)
    headers: dict[str, str] = field(default_factory=dict)
    injected: bool = False  # a fault a test asked for: exempt from the contract check

    @property
    def content_type(self) -> str | None:
        if self.body is None:
            return None
        return "application/problem+json" if self.status >= 400 else "application/json"


def problem(
    status: int,
    detail: str,
    *,
    errors: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """An ``application/problem+json`` answer."""
    body: dict[str, Any] = {
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Answer(status, body, headers or {})


async def render(
    request: web.Request, answer: Answer, headers: dict[str, str], spoil: str | bytes | None
) -> web.StreamResponse:
    """The aiohttp response of ``answer``, its body spoilt as ``spoil`` says (see
    Faults.corrupt_next)."""
    headers = {**headers, **answer.headers}
    if answer.body is None or answer.content_type is None:
        return web.Response(status=answer.status, headers=headers)
    headers["Content-Type"] = answer.content_type
    data = orjson.dumps(answer.body)
    if spoil == "cut":
        response = web.StreamResponse(status=answer.status, headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
    if spoil == "garbage":
        headers["Content-Type"] = "text/html"
        data = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    elif spoil == "truncated":
        data = data[: max(1, len(data) // 2)]
    elif spoil == "wrong_shape":
        data = b'{"unexpected": [1, 2, 3]}'
    elif isinstance(spoil, bytes):
        data = spoil
    return web.Response(status=answer.status, body=data, headers=headers)


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, None when empty or not JSON."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
