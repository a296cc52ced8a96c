"""What the reactor and the workers in its pods must agree on, and the values that agree.

The worker never imports the reactor (they share only the SQL contract), so a pod knows
the reactor's timeouts only if the reactor puts them in its environment. Two worker
settings must fit the reactor's:

- ``HEARTBEAT_INTERVAL_SEC`` (the worker's default is 15 s) must be well under
  ``GPU_IDLE_TIMEOUT_SEC``, or the reactor retires healthy workers mid-task as "heartbeat
  stale": at most a quarter of it, so three beats in a row may be late or lost first.
- ``TASK_TIMEOUT_SEC`` (the worker's default is 3600 s) must stay below
  ``TASK_STUCK_TIMEOUT_SEC``, or the reactor takes a long task back before the worker
  gives up on it and the worker's outcome is discarded (``lease_lost``): at most 90 % of
  it, which leaves the worker time to stop the program and report.

Unless ``WORKER_EXTRA_ENV`` sets them, every pod gets ``HEARTBEAT_INTERVAL_SEC`` =
min(15, GPU_IDLE_TIMEOUT_SEC / 4), and a ``TASK_TIMEOUT_SEC`` of 90 % of
TASK_STUCK_TIMEOUT_SEC when the worker's default would not fit. A ``WORKER_EXTRA_ENV``
value that does not fit stops start-up with one line naming both settings. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

HEARTBEAT_ENV = "HEARTBEAT_INTERVAL_SEC"
TASK_TIMEOUT_ENV = "TASK_TIMEOUT_SEC"
# The worker's own defaults (worker/settings.py; tests/test_worker_contract.py holds them
# equal).
WORKER_HEARTBEAT_DEFAULT_SEC = 15.0
WORKER_TASK_TIMEOUT_DEFAULT_SEC = 3600.0
HEARTBEATS_PER_IDLE_TIMEOUT = 4  # the interval is at most a quarter of the timeout
TASK_TIMEOUT_SHARE = 0.9  # the worker's task limit is at most 90 % of the stuck limit


def heartbeat_limit(idle_timeout_sec: float) -> float:
    """The longest heartbeat interval that is well under GPU_IDLE_TIMEOUT_SEC."""
    return idle_timeout_sec / HEARTBEATS_PER_IDLE_TIMEOUT


def task_timeout_limit(stuck_timeout_sec: float) -> float:
    """The longest worker task limit that stays below TASK_STUCK_TIMEOUT_SEC."""
    return stuck_timeout_sec * TASK_TIMEOUT_SHARE


def contract_env(
    extra_env: Mapping[str, str], *, idle_timeout_sec: float, stuck_timeout_sec: float
) -> dict[str, str]:
    """The contract values a pod gets besides ``extra_env`` (WORKER_EXTRA_ENV), for each
    one that ``extra_env`` does not set itself."""
    out: dict[str, str] = {}
    if _lookup(extra_env, HEARTBEAT_ENV) is None:
        interval = min(WORKER_HEARTBEAT_DEFAULT_SEC, heartbeat_limit(idle_timeout_sec))
        out[HEARTBEAT_ENV] = seconds(interval)
    limit = task_timeout_limit(stuck_timeout_sec)
    if _lookup(extra_env, TASK_TIMEOUT_ENV) is None and limit < WORKER_TASK_TIMEOUT_DEFAULT_SEC:
        out[TASK_TIMEOUT_ENV] = seconds(limit)
    return out


def contract_problem(
    extra_env: Mapping[str, str], *, idle_timeout_sec: float, stuck_timeout_sec: float
) -> str | None:
    """One line naming both settings when ``extra_env`` sets a worker value that does not
    fit the reactor's; None when everything fits."""
    heartbeat = _lookup(extra_env, HEARTBEAT_ENV)
    if heartbeat is not None:
        most = heartbeat_limit(idle_timeout_sec)
        value = _number(heartbeat)
        if value is None or value > most:
            return (
                f"WORKER_EXTRA_ENV sets {HEARTBEAT_ENV}={heartbeat[:40]!r}, which is not well "
                f"under GPU_IDLE_TIMEOUT_SEC={idle_timeout_sec:g}: at most a quarter of it "
                f"({seconds(most)}), or healthy workers are retired as heartbeat stale; "
                f"lower it, or leave it out and pods get "
                f"{seconds(min(WORKER_HEARTBEAT_DEFAULT_SEC, most))}"
            )
    task = _lookup(extra_env, TASK_TIMEOUT_ENV)
    if task is not None:
        most = task_timeout_limit(stuck_timeout_sec)
        value = _number(task)
        if value is None or value > most:
            return (
                f"WORKER_EXTRA_ENV sets {TASK_TIMEOUT_ENV}={task[:40]!r}, which does not stay "
                f"below TASK_STUCK_TIMEOUT_SEC={stuck_timeout_sec:g}: at most 90 % of it "
                f"({seconds(most)}), or the reactor takes long tasks back before the worker "
                "gives up on them; lower it or raise TASK_STUCK_TIMEOUT_SEC"
            )
    return None


def seconds(value: float) -> str:
    """Seconds as the worker reads them: '15', '1.5', '3780'."""
    return str(int(value)) if value == int(value) else repr(value)


def _lookup(env: Mapping[str, str], name: str) -> str | None:
    # The worker reads its environment case-insensitively.
    return next((v for k, v in env.items() if k.upper() == name), None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None
