"""Processors the worker tests plug in by ``module:function`` (never imported by the worker
package itself). The ledger records every execution, so a test can prove no task was
processed twice."""

from __future__ import annotations

import asyncio
import os
from typing import Any

LEDGER_ENV = "WORKER_TEST_LEDGER"


def record(params: dict[str, Any]) -> dict[str, Any]:
    """Append the task's key to the ledger file (one O_APPEND write: atomic per line)."""
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{params['key']}\n".encode())
    finally:
        os.close(fd)
    return {"key": params["key"], "pid": os.getpid()}


async def double(params: dict[str, Any]) -> dict[str, Any]:
    return {"double": params["x"] * 2}


def boom(params: dict[str, Any]) -> None:
    raise ValueError("boom: the input was not acceptable")


async def hang(params: dict[str, Any]) -> None:
    await asyncio.sleep(3600)


def unserialisable(params: dict[str, Any]) -> Any:
    return {"handle": object()}


def nul_result(params: dict[str, Any]) -> dict[str, str]:
    """JSON-able, but Postgres jsonb cannot hold a NUL character."""
    return {"text": "before\x00after"}
