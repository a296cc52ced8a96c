"""HTTP transport for Runpod REST v2: Bearer auth, rate limits, bounded retries, problems.

``RunpodHttp.request`` sends one logical call and returns a ``Reply`` with a 2xx or 4xx
status (never 429 or 5xx): 429 is waited out when ``Retry-After`` fits the wait budget,
else ``RateLimited`` is raised; 5xx, timeouts, lost connections and unreadable bodies are
retried only when the caller says the call is safe to repeat, else (and once the retries
are spent) ``TransientProviderError`` is raised. Every HTTP attempt is reported to
``on_request(operation, outcome)``; the caller may say what a 2xx or 4xx answer means
(``judge``: a create's 400 is no capacity or a rejected request). One call may have its
own timeout (a create waits longer than a read). The API key never reaches a log line or
an exception.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from reactor.aio import wait_event
from reactor.errors import ProviderError, RateLimited, TransientProviderError, one_line
from reactor.providers.ratelimit import parse_ratelimit, parse_retry_after

log = logging.getLogger("reactor.providers.runpod")

OnRequest = Callable[[str, str], None]
Judge = Callable[["Reply"], str]  # the metric outcome of a 2xx or 4xx answer

# What a provider wrote (a problem's detail, an unreadable body) is kept to this many
# characters of one printable line; a whole message to _MESSAGE.
_SNIPPET = 200
_MESSAGE = 300
# Bytes of an unreadable body decoded at all (the API key is scrubbed before the cut).
_RAW_LIMIT = 4096


@dataclass(frozen=True)
class Reply:
    """One answer with a status below 500 (and not 429), its body parsed as JSON."""

    status: int
    body: Any
    request_id: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def detail(self) -> str:
        """The problem's ``detail`` (or ``title``) as one printable line, '' when the
        body has neither."""
        if isinstance(self.body, dict):
            for key in ("detail", "title", "message", "error"):
                value = self.body.get(key)
                if isinstance(value, str) and (line := one_line(value, _SNIPPET)):
                    return line
        return ""

    def errors(self) -> list[str]:
        """The problem's ``errors`` list (422), each as one printable line."""
        raw = self.body.get("errors") if isinstance(self.body, dict) else None
        if not isinstance(raw, list):
            return []
        return [
            one_line(item if isinstance(item, str) else orjson.dumps(item).decode(), _SNIPPET)
            for item in raw
        ]


@dataclass(frozen=True)
class _Call:
    """One logical call, as ``request`` was asked for it."""

    operation: str
    method: str
    path: str
    json: Any
    params: dict[str, str] | None
    timeout_sec: float | None
    judge: Judge | None


@dataclass
class _Budget:
    """What one logical call may still spend on waiting and repeating."""

    wait_left: float
    rate_limit_retries: int
    transient_retries: int
    attempt: int = 0


def outcome_of(status: int) -> str:
    """The metric label of one HTTP answer (a caller's ``judge`` may say more)."""
    if 200 <= status < 300:
        return "ok"
    if status == 402:
        return "insufficient_balance"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "client_error"


class RunpodHttp:
    """One aiohttp session to the Runpod REST v2 API, shared by every call."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout_sec: float,
        on_request: OnRequest | None = None,
        read_retries: int = 3,
        retry_base_sec: float = 0.25,
        max_wait_sec: float = 10.0,
    ) -> None:
        """
        :param base_url: API base such as ``https://api.runpod.io/v2``.
        :param api_key: Bearer token; kept out of every message this class produces.
        :param timeout_sec: total time of one HTTP attempt.
        :param on_request: called as ``(operation, outcome)`` for every HTTP attempt.
        :param read_retries: extra attempts for calls safe to repeat (5xx, timeouts).
        :param retry_base_sec: first delay between those attempts (doubling, jittered).
        :param max_wait_sec: longest one call waits for rate limits before raising
            ``RateLimited``.
        """
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_sec)
        self._on_request = on_request
        self._read_retries = read_retries
        self._retry_base = retry_base_sec
        self._max_wait = max_wait_sec
        self._session: aiohttp.ClientSession | None = None
        self._closed = asyncio.Event()
        self._paused_until = 0.0  # monotonic; set when a RateLimit window is exhausted

    # --- lifecycle ---------------------------------------------------------------------
    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed.is_set():
            raise TransientProviderError("the Runpod provider is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={
                    "Authorization": f"Bearer {self._key}",
                    "Accept": "application/json",
                    "User-Agent": "gpu-reactor",
                },
            )
        return self._session

    async def close(self) -> None:
        self._closed.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- one logical call --------------------------------------------------------------
    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        repeatable: bool,
        timeout_sec: float | None = None,
        judge: Judge | None = None,
    ) -> Reply:
        """Send ``method path``; see the module docstring for what is retried.

        :param timeout_sec: this call's timeout, instead of the session's.
        :param judge: the metric outcome of a 2xx or 4xx answer, instead of
            ``outcome_of(status)``.
        """
        call = _Call(operation, method, path, json, params, timeout_sec, judge)
        budget = _Budget(
            wait_left=self._max_wait,
            rate_limit_retries=2,
            transient_retries=self._read_retries if repeatable else 0,
        )
        while True:
            await self._respect_pause(operation, budget)
            budget.attempt += 1
            try:
                reply, headers = await self._send(call)
            except TransientProviderError as exc:
                await self._before_retry(operation, budget, exc)
                continue
            self._note_ratelimit(headers)
            if reply.status == 429:
                await self._wait_for_rate_limit(operation, budget, reply, headers)
                continue
            if reply.status >= 500:
                failure = TransientProviderError(
                    self.scrub(
                        f"Runpod {operation} answered {reply.status}: "
                        f"{reply.detail() or 'server error'}"
                    ),
                    status=reply.status,
                    request_id=reply.request_id,
                )
                await self._before_retry(operation, budget, failure)
                continue
            return reply

    async def _send(self, call: _Call) -> tuple[Reply, Any]:
        session = self._get_session()
        operation = call.operation
        url = self.base_url + call.path
        data = orjson.dumps(call.json) if call.json is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        timeout = self._timeout
        if call.timeout_sec is not None:
            timeout = aiohttp.ClientTimeout(total=call.timeout_sec)
        try:
            async with session.request(
                call.method,
                url,
                data=data,
                params=call.params,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                raw = await resp.read()
                request_id = resp.headers.get("x-request-id")
                status, resp_headers = resp.status, resp.headers
        except TimeoutError as exc:
            self._report(operation, "timeout")
            raise TransientProviderError(
                f"Runpod {operation} timed out after {timeout.total:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            self._report(operation, "network_error")
            raise TransientProviderError(
                self.scrub(f"Runpod {operation} failed: {type(exc).__name__}: {exc}")
            ) from exc
        body = self._decode(operation, status, raw, request_id)
        reply = Reply(status, body, request_id)
        outcome = outcome_of(status)
        if call.judge is not None and status < 500 and status != 429:
            outcome = call.judge(reply)
        self._report(operation, outcome)
        if not reply.ok and status != 429:
            self._log_failure(operation, call.method, call.path, reply)
        return reply, resp_headers

    def _decode(self, operation: str, status: int, raw: bytes, request_id: str | None) -> Any:
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            text = self.scrub(raw[:_RAW_LIMIT].decode("utf-8", "replace"), limit=_SNIPPET)
            if 200 <= status < 300:
                self._report(operation, "bad_response")
                log.warning(
                    "runpod_unreadable_answer",
                    extra={
                        "operation": operation,
                        "status": status,
                        "request_id": request_id,
                        "body": text,
                    },
                )
                raise TransientProviderError(
                    f"Runpod {operation} answered {status} with an unreadable body",
                    status=status,
                    request_id=request_id,
                ) from exc
            return {"detail": text}

    # --- waiting -------------------------------------------------------------------------
    async def _respect_pause(self, operation: str, budget: _Budget) -> None:
        wait = self._paused_until - time.monotonic()
        if wait <= 0:
            return
        if wait > budget.wait_left:
            raise RateLimited(
                f"Runpod rate limit exhausted; resets in {wait:.0f}s", retry_after=wait, status=429
            )
        log.info(
            "runpod_rate_limit_pause", extra={"operation": operation, "seconds": round(wait, 2)}
        )
        await self._sleep(wait, budget)

    async def _wait_for_rate_limit(
        self, operation: str, budget: _Budget, reply: Reply, headers: Any
    ) -> None:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is None:
            retry_after = parse_ratelimit(headers.get("RateLimit")) or 1.0
        log.warning(
            "runpod_rate_limited",
            extra={
                "operation": operation,
                "retry_after": retry_after,
                "request_id": reply.request_id,
            },
        )
        if budget.rate_limit_retries <= 0 or retry_after > budget.wait_left:
            raise RateLimited(
                f"Runpod rate limit: retry after {retry_after:g}s",
                retry_after=retry_after,
                status=429,
                request_id=reply.request_id,
            )
        budget.rate_limit_retries -= 1
        await self._sleep(retry_after, budget)

    async def _before_retry(
        self, operation: str, budget: _Budget, exc: TransientProviderError
    ) -> None:
        if budget.transient_retries <= 0:
            raise exc
        budget.transient_retries -= 1
        delay = min(self._retry_base * 2 ** (budget.attempt - 1), 5.0)
        delay *= random.uniform(0.5, 1.0)
        log.info(
            "runpod_retry",
            extra={
                "operation": operation,
                "attempt": budget.attempt,
                "delay": round(delay, 3),
                "error": str(exc),
            },
        )
        await self._sleep(delay, budget, count=False)

    async def _sleep(self, seconds: float, budget: _Budget, *, count: bool = True) -> None:
        if count:
            budget.wait_left -= seconds
        await self.pause(seconds)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, cut short (TransientProviderError) when the provider closes."""
        if await wait_event(self._closed, seconds):
            raise TransientProviderError("the Runpod provider was closed while waiting")

    def _note_ratelimit(self, headers: Any) -> None:
        wait = parse_ratelimit(headers.get("RateLimit"))
        if wait is not None and wait > 0:
            self._paused_until = max(self._paused_until, time.monotonic() + wait)

    # --- reporting -------------------------------------------------------------------------
    def _report(self, operation: str, outcome: str) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(operation, outcome)
        except Exception:  # a metrics hook must never break a provider call
            log.exception("runpod_on_request_hook_failed")

    def _log_failure(self, operation: str, method: str, path: str, reply: Reply) -> None:
        quiet = reply.status == 404 and operation in ("get", "terminate")
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "runpod_request_failed",
            extra={
                "operation": operation,
                "method": method,
                "path": path,
                "status": reply.status,
                "request_id": reply.request_id,
                "detail": self.scrub(reply.detail()),
            },
        )

    def scrub(self, text: str, *, limit: int = _MESSAGE) -> str:
        """``text`` without the API key, as one printable line of at most ``limit``
        characters."""
        if self._key and self._key in text:
            text = text.replace(self._key, "**********")
        return one_line(text, limit)

    def error(self, cls: type[ProviderError], message: str, reply: Reply) -> ProviderError:
        """An error of ``cls`` carrying the reply's status and request id, scrubbed."""
        return cls(self.scrub(message), status=reply.status, request_id=reply.request_id)
