"""Start ``python -m worker`` processes for tests and demos, and leave none behind.

    with WorkerProcs(dsn, env={"WORKER_PROCESSORS": "x=pkg.mod:fn"}) as procs:
        a, b = procs.start(2)
        ...
        procs.stop_all()          # SIGTERM, wait, SIGKILL what lingers; returns exit codes

Each worker runs in its own session (process group), so killing it also kills any program
its ``command`` processor started. ``close()`` (also on leaving the ``with``) SIGKILLs
whatever is still running and returns the ids of those it had to kill, so a test can fail
when it left workers running. Stderr (the JSON log) goes to a file per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[2]
# Fast defaults for tests: beat and poll often, give up connecting quickly.
TEST_DEFAULTS = {
    "HEARTBEAT_INTERVAL_SEC": "0.5",
    "POLL_INTERVAL_SEC": "0.5",
    "WORKER_CONNECT_RETRIES": "3",
    "WORKER_RECONNECT_MAX_SEC": "1",
    "WORKER_DB_TIMEOUT_SEC": "10",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
}
_INHERITED_PREFIXES = ("WORKER_", "DATABASE_URL", "HEARTBEAT_", "POLL_", "TASK_", "LOG_")


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any worker setting, plus the test defaults and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(TEST_DEFAULTS)
    env.update(extra or {})
    return env


class WorkerProcess:
    def __init__(self, worker_id: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.worker_id = worker_id
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the worker and everything in its process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    async def wait_async(self, timeout: float) -> int:
        """Wait for the exit without blocking the event loop; TimeoutError when it lingers."""
        deadline = time.monotonic() + timeout
        while (code := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker {self.worker_id} still running after {timeout}s\n"
                    + self.stderr()[-3000:]
                )
            await asyncio.sleep(0.02)
        return code

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The worker's JSON log lines (other stderr lines skipped), optionally one event."""
        found = []
        for line in self.stderr().splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if name is None or record.get("event") == name:
                    found.append(record)
        return found

    async def wait_for_event(
        self,
        name: str,
        timeout: float = 10,
        where: Callable[[dict[str, Any]], bool] = lambda _r: True,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for record in self.events(name):
                if where(record):
                    return record
            if time.monotonic() > deadline or not self.alive:
                raise AssertionError(
                    f"no {name!r} event from {self.worker_id} "
                    f"(alive={self.alive}):\n{self.stderr()[-3000:]}"
                )
            await asyncio.sleep(0.02)


class WorkerProcs:
    """A set of worker processes sharing one database and base environment."""

    _ids = itertools.count(1)

    def __init__(
        self, dsn: str, *, env: dict[str, str] | None = None, log_dir: Path | None = None
    ) -> None:
        self.dsn = dsn
        self.env = dict(env or {})
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="gpu-worker-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[WorkerProcess] = []

    def start(
        self,
        n: int = 1,
        *,
        env: dict[str, str] | None = None,
        worker_id: str | None = None,
        prefix: str = "test-worker",
    ) -> list[WorkerProcess]:
        started = []
        for _ in range(n):
            wid = worker_id if worker_id and n == 1 else f"{prefix}-{next(self._ids)}"
            full_env = base_env(
                {"WORKER_ID": wid, "DATABASE_URL": self.dsn, **self.env, **(env or {})}
            )
            log_path = self.log_dir / f"{wid}.log"
            with open(log_path, "wb") as log_file:
                popen = subprocess.Popen(
                    [sys.executable, "-m", "worker"],
                    env=full_env,
                    cwd=REPO,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            proc = WorkerProcess(wid, popen, log_path)
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop_all(self, timeout: float = 15) -> dict[str, int]:
        """SIGTERM every live worker, wait for them, SIGKILL any that outlast ``timeout``."""
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        return {p.worker_id: p.popen.returncode for p in self.procs}

    def close(self) -> list[str]:
        """SIGKILL whatever still runs (with its process group); return their worker ids."""
        leftovers = []
        for proc in self.procs:
            if proc.alive:
                leftovers.append(proc.worker_id)
            # The group may hold a command's children even after the worker itself exited.
            proc.kill()
        return leftovers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
