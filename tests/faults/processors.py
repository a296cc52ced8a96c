"""Processors the fault suite's workers run.

``WORKER_PROCESSORS=fault=tests.faults.processors:record``.

Every execution appends to the ledger file named by ``FAULT_LEDGER`` - a ``start`` line
when it begins and an ``end`` line when it returns - with a nonce that the result carries,
so a test can count executions per task and prove which execution a stored result came
from. One ``O_APPEND`` write per line keeps lines whole across processes.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

LEDGER_ENV = "FAULT_LEDGER"
CRASH_EXIT_CODE = 13


def _append(line: str) -> None:
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def record(params: dict[str, Any]) -> dict[str, Any]:
    """Note the execution, take ``params["seconds"]`` (a GPU job's duration), note the end."""
    key, nonce, pid = params["key"], secrets.token_hex(6), os.getpid()
    _append(f"start {key} {nonce} {pid}")
    time.sleep(float(params.get("seconds", 0)))
    _append(f"end {key} {nonce} {pid}")
    return {"key": key, "nonce": nonce, "pid": pid}


def crash(params: dict[str, Any]) -> None:
    """A poison task: note the execution, then take the whole worker down with it."""
    _append(f"start {params['key']} {secrets.token_hex(6)} {os.getpid()}")
    os._exit(CRASH_EXIT_CODE)
