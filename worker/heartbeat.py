"""The heartbeat: liveness, GPU metadata, and the reactor's word on this worker's fate.

Beats every HEARTBEAT_INTERVAL_SEC (with a little jitter) on its own connection, and at
once when poked (the listener saw a status change for this worker). The answer is the
worker's status: 'terminating', 'error' or 'terminated' start the drain. A failed beat is
logged once per outage and retried on the next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from typing import Any

from worker import __version__
from worker.db import REFUSED, Link
from worker.errors import DatabaseUnavailable
from worker.gpu import GpuProbe
from worker.state import WorkerState

log = logging.getLogger(__name__)

LIVE_STATUSES = frozenset({"spawning", "active"})
STOP_STATUSES = frozenset({"terminating", "error", "terminated"})


class Heartbeat:
    def __init__(
        self,
        *,
        link: Link,
        state: WorkerState,
        interval: float,
        gpu: GpuProbe,
        static: dict[str, Any] | None = None,
    ) -> None:
        self.link = link
        self.state = state
        self.interval = interval
        self.gpu = gpu
        self.static = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "worker_version": __version__,
            **(static or {}),
        }
        self.status: str | None = None
        self._poke = asyncio.Event()
        self._failing = False

    def poke(self) -> None:
        """Beat now rather than at the next interval."""
        self._poke.set()

    async def metadata(self) -> dict[str, Any]:
        return {**self.static, **await self.gpu.read(), **self.state.snapshot()}

    async def beat(self) -> str:
        """One heartbeat; returns the worker's status (raises DatabaseUnavailable)."""
        status = await self.link.heartbeat(await self.metadata())
        if status != self.status:
            log.info(
                "heartbeat_status",
                extra={
                    "worker_id": self.state.worker_id,
                    "status": status,
                    "previous": self.status,
                },
            )
            self.status = status
        self.obey(status)
        return status

    def obey(self, status: str) -> None:
        if status == REFUSED:
            log.error(
                "heartbeat_refused",
                extra={
                    "worker_id": self.state.worker_id,
                    "error": "the database refuses this worker id: WORKER_TOKEN is missing or "
                    "is not the one the reactor gave this pod",
                },
            )
            self.state.drain("heartbeat refused (WORKER_TOKEN)")
        elif status in STOP_STATUSES:
            self.state.drain(f"status {status}")
        elif status not in LIVE_STATUSES:
            log.warning(
                "heartbeat_unknown_status",
                extra={"worker_id": self.state.worker_id, "status": status},
            )

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await self._wait()
            try:
                await self.beat()
            except DatabaseUnavailable as exc:
                if not self._failing:
                    log.warning(
                        "heartbeat_failed",
                        extra={"worker_id": self.state.worker_id, "error": str(exc)},
                    )
                self._failing = True
                continue
            if self._failing:
                log.info("heartbeat_restored", extra={"worker_id": self.state.worker_id})
                self._failing = False

    async def _wait(self) -> None:
        timeout = self.interval * random.uniform(0.9, 1.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._poke.wait()
        self._poke.clear()
