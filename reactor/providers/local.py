"""The local provider: each pod is a gpu-worker process on this machine.

For development, the demo and tests. A pod is one process started in its own process
group with the environment a Runpod pod would get (the spec's env; none of the reactor's
own settings leak through), its output in ``<workdir>/<pod name>.log``. Pod ids are
``local-<pid>``. A terminate sends SIGTERM to the group, SIGKILL after a grace period,
and reaps the process; ``close()`` does that for every process still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reactor.errors import PermanentProviderError
from reactor.providers.base import Pod, PodSpec
from reactor.settings import Settings

log = logging.getLogger("reactor.providers.local")

_POLL_SEC = 0.02
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class _Worker:
    pod_id: str
    name: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    created_at: datetime
    exited_at: float | None = None  # monotonic
    gpu_type: str = "local"
    price: float = 0.0  # USD/hour while it runs


class LocalProvider:
    """Pods as local processes; every process it starts is ended by ``close()``."""

    name = "local"

    def __init__(
        self,
        *,
        settings: Settings,
        workdir: str | Path | None = None,
        command: list[str] | None = None,
        grace_sec: float = 5.0,
        keep_exited_sec: float = 600.0,
    ) -> None:
        """
        :param settings: LOCAL_WORKER_COMMAND and GPU_HOURLY_PRICE_USD are read.
        :param workdir: directory of the per-worker log files (default: a new temp dir).
        :param command: the worker command line; overrides LOCAL_WORKER_COMMAND
            (default ``[sys.executable, "-m", "worker"]``).
        :param grace_sec: time between SIGTERM and SIGKILL on terminate.
        :param keep_exited_sec: an exited process stays listed (EXITED) this long.
        """
        self.settings = settings
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gpu-reactor-local-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.command = command or (
            shlex.split(settings.local_worker_command)
            if settings.local_worker_command.strip()
            else [sys.executable, "-m", "worker"]
        )
        self.grace_sec = grace_sec
        self.keep_exited_sec = keep_exited_sec
        self._workers: dict[str, _Worker] = {}

    def for_pool(self, settings: Settings) -> LocalProvider:
        """The same processes, created with a GPU pool's settings (its price, its first
        GPU type as the pod's GPU type); only this provider is closed."""
        twin = copy.copy(self)
        twin.settings = settings
        return twin

    # --- create ----------------------------------------------------------------------------
    async def create(self, spec: PodSpec) -> Pod:
        log_path = self.workdir / f"{_UNSAFE.sub('_', spec.name) or 'worker'}.log"
        process = self._start(spec, log_path)
        worker = _Worker(
            f"local-{process.pid}",
            spec.name,
            dict(spec.env),
            process,
            log_path,
            datetime.now(UTC),
            # A pool's first GPU type names its local "GPU", so pools can be told apart.
            gpu_type=next(iter(self.settings.runpod_gpu_types), "local"),
            price=self.settings.gpu_hourly_price_usd,
        )
        self._workers[worker.pod_id] = worker  # a reused pid replaces its old record
        log.info(
            "local_worker_started",
            extra={"pod_id": worker.pod_id, "pod_name": spec.name, "log_path": str(log_path)},
        )
        return self._pod(worker)

    def _start(self, spec: PodSpec, log_path: Path) -> subprocess.Popen[bytes]:
        # A plain Popen (a fork takes milliseconds), not asyncio's subprocess: the process
        # is not tied to one event loop, and it is reaped here (waitid) not by a watcher.
        try:
            with log_path.open("ab") as out:
                return subprocess.Popen(
                    self.command,
                    env=self._environment(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise PermanentProviderError(
                f"cannot start the local worker command {self.command[0]!r}: {exc}"
            ) from exc

    def _environment(self, spec: PodSpec) -> dict[str, str]:
        own = {(f.alias or name).upper() for name, f in Settings.model_fields.items()}
        env = {k: v for k, v in os.environ.items() if k.upper() not in own}
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(spec.env)
        return env

    # --- reads ---------------------------------------------------------------------------------
    async def list_pods(self) -> list[Pod]:
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if (
                self._exited(worker)
                and worker.exited_at is not None
                and now - worker.exited_at > self.keep_exited_sec
            ):
                self._workers.pop(worker.pod_id, None)
        return [self._pod(w) for w in self._workers.values()]

    async def get(self, pod_id: str) -> Pod | None:
        worker = self._workers.get(pod_id)
        return self._pod(worker) if worker is not None else None

    async def estimated_price(self) -> float | None:
        return self.settings.gpu_hourly_price_usd

    def log_path(self, pod_id: str) -> Path | None:
        worker = self._workers.get(pod_id)
        return worker.log_path if worker else None

    def pids(self) -> list[int]:
        """Process ids of the workers still running."""
        return [w.process.pid for w in self._workers.values() if not self._exited(w)]

    def _pod(self, worker: _Worker) -> Pod:
        running = not self._exited(worker)
        return Pod(
            id=worker.pod_id,
            name=worker.name,
            status="RUNNING" if running else "EXITED",
            gpu_type=worker.gpu_type,
            cost_per_hr=worker.price if running else 0.0,
            env=dict(worker.env),
            created_at=worker.created_at,
        )

    # --- terminate -------------------------------------------------------------------------------
    async def terminate(self, pod_id: str) -> None:
        worker = self._workers.get(pod_id)
        if worker is None:
            return  # already gone: success
        await self._stop(worker)
        self._workers.pop(pod_id, None)
        log.info(
            "local_worker_terminated",
            extra={
                "pod_id": pod_id,
                "pod_name": worker.name,
                "exit_code": worker.process.returncode,
            },
        )

    async def _stop(self, worker: _Worker) -> None:
        if self._exited(worker):
            return
        _signal_group(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_sec
        while not self._exited(worker):
            if time.monotonic() >= deadline:
                log.warning(
                    "local_worker_killed",
                    extra={"pod_id": worker.pod_id, "grace_sec": self.grace_sec},
                )
                _signal_group(worker.process.pid, signal.SIGKILL)
                deadline = float("inf")
            await asyncio.sleep(_POLL_SEC)

    def _exited(self, worker: _Worker) -> bool:
        """Whether the process has ended; on first sight, clears its group and reaps it."""
        if worker.exited_at is not None:
            return True
        process = worker.process
        if not hasattr(os, "waitid"):  # pragma: no cover - platforms without waitid
            if process.poll() is None:
                return False
        else:
            try:
                ended = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped by someone else: its ids may be reused
                process.poll()
            else:
                if ended is None:
                    return False
                # The unreaped process keeps its group id reserved: stragglers it left in
                # the group are killed before the id can be reused.
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        worker.exited_at = time.monotonic()
        return True

    async def close(self) -> None:
        workers = list(self._workers.values())
        await asyncio.gather(*(self._stop(w) for w in workers))
        self._workers.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
