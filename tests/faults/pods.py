"""Fake Runpod pods that are real worker processes.

``PodProcesses`` plugs into the fake's hooks: a create starts ``python -m worker`` with
the pod's environment (exactly what the reactor put in the create body), a terminate
sends SIGTERM and, after a grace period, SIGKILL to the pod's process group. A worker
process that ends on its own (killed, crashed) leaves its pod EXITED, as a container
whose main process died would. ``hold(worker_id)`` delays a terminate's effect until
``release`` (a machine that is unreachable when its pod is terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from tests.fakes.runpod_v2 import FakePod, FakeRunpod
from tests.util import wait_until
from tests.worker.procs import WorkerProcess, WorkerProcs

EXITED = "EXITED"


class PodProcesses:
    def __init__(
        self,
        runpod: FakeRunpod,
        *,
        log_dir: Path,
        grace_sec: float = 3.0,
        on_created: Callable[[FakePod], None] | None = None,
    ) -> None:
        """
        :param runpod: the fake whose ``on_create`` / ``on_terminate`` this takes over.
        :param grace_sec: time between a terminate's SIGTERM and its SIGKILL.
        :param on_created: called after each pod's process has started (invariant checks).
        """
        self.runpod = runpod
        self.grace_sec = grace_sec
        self.on_created = on_created
        # No DATABASE_URL of its own: each pod gets the one the reactor put in its env.
        self.procs = WorkerProcs("", log_dir=log_dir)
        self.by_pod: dict[str, WorkerProcess] = {}
        self.by_worker: dict[str, WorkerProcess] = {}
        self.held: set[str] = set()
        self.pending: dict[str, FakePod] = {}  # held terminates, by worker id
        self.terminated: set[str] = set()  # worker ids whose pod was terminated
        self._stoppers: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        runpod.on_create, runpod.on_terminate = self.on_create, self.on_terminate

    # --- hooks ---------------------------------------------------------------------------
    def on_create(self, pod: FakePod) -> None:
        [proc] = self.procs.start(1, worker_id=pod.name, env=dict(pod.env))
        self.by_pod[pod.id] = proc
        self.by_worker[pod.name] = proc
        if self.on_created is not None:
            self.on_created(pod)

    def on_terminate(self, pod: FakePod) -> None:
        self.terminated.add(pod.name)
        if pod.name in self.held:
            self.pending[pod.name] = pod
            return
        self._stop(pod)

    def _stop(self, pod: FakePod) -> None:
        proc = self.by_pod.get(pod.id)
        if proc is None or not proc.alive:
            return
        _signal_group(proc, signal.SIGTERM)
        task = asyncio.create_task(self._kill_after_grace(proc), name=f"stop-{pod.name}")
        self._stoppers.add(task)
        task.add_done_callback(self._stoppers.discard)

    async def _kill_after_grace(self, proc: WorkerProcess) -> None:
        with contextlib.suppress(TimeoutError):
            await proc.wait_async(self.grace_sec)
            return
        proc.kill()

    # --- what tests do to pods ---------------------------------------------------------------
    def process(self, worker_id: str) -> WorkerProcess:
        return self.by_worker[worker_id]

    def kill(self, worker_id: str) -> None:
        """SIGKILL a pod's worker (its pod goes EXITED on the next watch)."""
        self.by_worker[worker_id].kill()

    def freeze(self, worker_id: str) -> None:
        """SIGSTOP: the process lives on, its heartbeat stops."""
        _signal_group(self.by_worker[worker_id], signal.SIGSTOP)

    def thaw(self, worker_id: str) -> None:
        _signal_group(self.by_worker[worker_id], signal.SIGCONT)

    def hold(self, worker_id: str) -> None:
        """A terminate of this worker's pod takes effect only at ``release``."""
        self.held.add(worker_id)

    def release(self, worker_id: str) -> None:
        self.held.discard(worker_id)
        pod = self.pending.pop(worker_id, None)
        if pod is not None:
            self._stop(pod)

    def alive(self) -> list[WorkerProcess]:
        return [p for p in self.procs.procs if p.alive]

    # --- pods follow their processes ------------------------------------------------------
    def start_watch(self) -> None:
        self._watch = asyncio.create_task(self._watch_exits(), name="pod-exit-watch")

    async def _watch_exits(self) -> None:
        while True:
            self.mark_exited()
            await asyncio.sleep(0.05)

    def mark_exited(self) -> None:
        for pod_id, proc in self.by_pod.items():
            pod = self.runpod.pods.get(pod_id)
            if pod is not None and pod.forced_status is None and not proc.alive:
                self.runpod.set_status(pod_id, EXITED)

    async def close(self, timeout: float = 10.0) -> list[str]:
        """Stop every process still running (SIGTERM, then SIGKILL); return the worker ids
        of those that were still running."""
        if self._watch is not None:
            self._watch.cancel()
        leftovers = [p.worker_id for p in self.alive()]
        for proc in self.alive():
            _signal_group(proc, signal.SIGCONT)
            _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: not self.alive(), timeout=timeout, interval=0.05)
        for task in list(self._stoppers):
            task.cancel()
        self.procs.close()
        return leftovers


def _signal_group(proc: WorkerProcess, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
