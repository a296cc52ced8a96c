"""`python -m reactor run` as processes a test can SIGKILL.

Each reactor gets exactly the environment the test gives it (plus PATH and the like, none
of the caller's own reactor settings), runs in a fresh directory (no ``.env``) and its
own process group, and writes its JSON log to a file the test reads.
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
import time
from pathlib import Path
from typing import Any

from reactor.settings import Settings
from tests.util import wait_until

REPO = Path(__file__).resolve().parents[2]
SETTING_NAMES = {(f.alias or name).upper() for name, f in Settings.model_fields.items()}


def clean_environ() -> dict[str, str]:
    """This process's environment without any reactor or worker setting."""
    worker_prefixes = ("WORKER_", "HEARTBEAT_", "POLL_", "TASK_", "FAULT_")
    return {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in SETTING_NAMES and not k.upper().startswith(worker_prefixes)
    }


def read_events(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of ``path`` (other lines skipped), optionally one event only."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if name is None or record.get("event") == name:
                found.append(record)
    return found


class ReactorProcess:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.killed_at: float | None = None  # time.time() of a SIGKILL

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return read_events(self.log_path, name)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def leading(self) -> bool:
        """Alive, and its latest role change says it leads."""
        roles = [
            e["event"]
            for e in self.events()
            if e.get("event") in ("leader_elected", "standby", "leadership_lost")
        ]
        return self.alive and bool(roles) and roles[-1] == "leader_elected"

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lock release, no goodbye."""
        self.killed_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code; SIGKILL when it lingers."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: self.popen.poll() is not None, timeout=timeout, interval=0.05)
        if self.popen.poll() is None:
            self.kill()
        return self.popen.returncode

    async def wait_for(
        self, event: str, *, timeout: float = 15.0, count: int = 1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event)
            if len(found) >= count:
                return found[count - 1]
            if not self.alive:
                raise AssertionError(
                    f"reactor {self.name} exited ({self.popen.returncode}) "
                    f"before {event!r}:\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {event!r} from reactor {self.name} within {timeout}s:\n"
                    f"{self.log_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)


class ReactorProcs:
    """Every reactor process a test starts; ``close()`` kills and names the leftovers."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[ReactorProcess] = []
        self._ids = itertools.count(1)

    def start(self, env: dict[str, str]) -> ReactorProcess:
        name = f"reactor-{next(self._ids)}"
        workdir = self.log_dir / name
        workdir.mkdir()
        log_path = self.log_dir / f"{name}.log"
        full_env = {**clean_environ(), "PYTHONUNBUFFERED": "1", **env}
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "reactor", "run"],
                env=full_env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = ReactorProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    @property
    def alive(self) -> list[ReactorProcess]:
        return [p for p in self.procs if p.alive]

    def leaders(self) -> list[ReactorProcess]:
        return [p for p in self.procs if p.leading]

    async def stop_all(self) -> dict[str, int]:
        running = self.alive
        codes = await asyncio.gather(*(p.stop() for p in running))
        return {p.name: c for p, c in zip(running, codes, strict=True)}

    def close(self) -> list[str]:
        leftovers = [p.name for p in self.alive]
        for proc in self.alive:
            proc.kill()
        return leftovers
