"""Connections to Postgres and the calls of the SQL contract.

Each concern (claim loop, heartbeat, LISTEN) owns one ``Link``: a single connection opened
on demand and thrown away on any sign of loss, so the next call reconnects. A lost
connection surfaces as ``DatabaseUnavailable`` (temporary: retry with backoff); anything
else from Postgres is a real error and propagates as the driver's exception.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from worker import queries
from worker.errors import DatabaseUnavailable, StartupError
from worker.logs import redact_dsn

log = logging.getLogger(__name__)

REFUSED = "refused"  # what heartbeat() answers when the database refuses this identity
TRANSIENT = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,  # connect or command timeout: treat the connection as half-open
    asyncpg.InterfaceError,  # "connection is closed" and friends
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExist, ConnectionFailure, ...
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)
FIRST_DELAY = 0.5


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def backoff_delays(first: float, cap: float) -> Any:
    """0.5, 1, 2, ... capped, each with up to 20 % jitter so a fleet does not stampede."""
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.0)
        delay = min(delay * 2, cap)


def clean_text(text: str) -> str:
    """Postgres text cannot hold NUL."""
    return text.replace("\x00", "\\0")


@dataclass(frozen=True)
class ClaimedTask:
    id: uuid.UUID
    task_type: str
    params: Any
    attempt: int
    max_attempts: int


class Link:
    """One named connection, opened on demand, re-opened after a loss."""

    def __init__(
        self, dsn: str, *, name: str, worker_id: str, timeout: float, token: str | None = None
    ) -> None:
        self.dsn = dsn
        self.token = token
        self.name = name
        self.worker_id = worker_id
        self.timeout = timeout
        self._conn: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        app = f"gpu-worker {self.name} {self.worker_id}"[:63]
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=self.timeout,
                command_timeout=self.timeout,
                server_settings={"application_name": app},
            )
        except TRANSIENT as exc:
            raise DatabaseUnavailable(f"cannot connect: {describe(exc)}") from exc
        if self.token:
            try:  # the session proves which worker it is (sql/schema.sql)
                await conn.execute(queries.SET_TOKEN, self.token)
            except BaseException as exc:
                conn.terminate()
                if isinstance(exc, TRANSIENT):
                    raise DatabaseUnavailable(f"cannot connect: {describe(exc)}") from exc
                raise
        self._conn = conn
        return self._conn

    def reset(self) -> None:
        """Drop the connection without waiting on it (it may be half-open)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await conn.close()
        except (Exception, asyncio.CancelledError):
            conn.terminate()
            raise

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        conn = await self.connection()
        try:
            return await getattr(conn, method)(query, *args)
        except TRANSIENT as exc:
            self.reset()
            raise DatabaseUnavailable(f"{self.name} connection lost: {describe(exc)}") from exc

    # --- the SQL contract ------------------------------------------------------------
    async def heartbeat(self, metadata: dict[str, Any]) -> str:
        status = await self._call(
            "fetchval", queries.HEARTBEAT, self.worker_id, orjson.dumps(metadata).decode()
        )
        # NULL: the row belongs to a worker whose token this session does not hold.
        return REFUSED if status is None else str(status)

    async def arm(self) -> None:
        await self._call("execute", queries.ARM)

    async def claim(self, task_types: list[str] | None) -> ClaimedTask | None:
        row = await self._call("fetchrow", queries.CLAIM, self.worker_id, task_types)
        if row is None:
            return None
        return ClaimedTask(
            id=row["id"],
            task_type=row["task_type"],
            params=orjson.loads(row["params"]),
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
        )

    async def complete(self, task: ClaimedTask, result_json: bytes) -> bool:
        return bool(
            await self._call(
                "fetchval",
                queries.COMPLETE,
                task.id,
                result_json.decode(),
                self.worker_id,
                task.attempt,
            )
        )

    async def fail(self, task: ClaimedTask, error: str) -> bool:
        return bool(
            await self._call(
                "fetchval", queries.FAIL, task.id, clean_text(error), self.worker_id, task.attempt
            )
        )

    async def release_held(self) -> int:
        """Hand back tasks a previous process under this id held (start-up only)."""
        return int(await self._call("fetchval", queries.RELEASE_HELD, self.worker_id) or 0)

    async def report_drained(self) -> bool:
        return bool(await self._call("fetchval", queries.REPORT_DRAINED, self.worker_id))


def describe(exc: BaseException) -> str:
    """One line: the exception's type and message (whitespace and newlines collapsed)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


async def open_with_retries(link: Link, *, retries: int, cap: float) -> None:
    """Connect ``link`` within ``retries`` attempts or raise one clear StartupError."""
    delays = backoff_delays(FIRST_DELAY, cap)
    where = redact_dsn(link.dsn)
    for attempt in range(1, retries + 1):
        try:
            await link.connection()
            return
        except DatabaseUnavailable as exc:
            if attempt == retries:
                tries = f"{retries} attempt" + ("s" if retries > 1 else "")
                raise StartupError(
                    f"cannot reach the database at {where} after {tries}: "
                    f"{exc.__cause__ and describe(exc.__cause__)}"
                ) from exc
            delay = next(delays)
            log.warning(
                "db_connect_failed",
                extra={
                    "attempt": attempt,
                    "retries": retries,
                    "retry_in": round(delay, 2),
                    "error": str(exc),
                },
            )
            await asyncio.sleep(delay)
        except asyncpg.PostgresError as exc:  # bad password, unknown database: permanent
            raise StartupError(
                f"the database at {where} refused the connection: {describe(exc)}"
            ) from exc
