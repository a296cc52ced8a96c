"""A pgqueuer consumer in a process of its own, the peer of a gpu-worker.

``python -m bench.pgq_consumer DSN ENTRYPOINT SLEEP_SEC HEARTBEAT_SEC DEQUEUE_TIMEOUT_SEC``
runs one PgQueuer whose entrypoint prints ``<job id> <unix time> <pid>`` when it starts,
then sleeps SLEEP_SEC. ``PgqConsumer`` is the bench's handle on such a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg

from bench.common import REPO, stop_process, wait_until


class PgqConsumer:
    def __init__(
        self,
        dsn: str,
        entrypoint: str,
        *,
        sleep_sec: float = 0.0,
        heartbeat_sec: float = 30.0,
        dequeue_timeout_sec: float = 30.0,
    ) -> None:
        self.args = [dsn, entrypoint, str(sleep_sec), str(heartbeat_sec), str(dequeue_timeout_sec)]
        self.started: dict[str, tuple[float, int]] = {}  # job id -> (unix time, pid)
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.pgq_consumer",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=REPO,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                job_id, at, pid = line.decode().split()
                self.started[job_id] = (float(at), int(pid))

    async def wait_started(self, job_id: str, timeout: float) -> tuple[float, int]:
        async def seen() -> bool:
            return job_id in self.started

        await wait_until(seen, timeout=timeout, interval=0.002, what="pgqueuer's consumer")
        return self.started[job_id]

    async def stop(self) -> None:
        await stop_process(self.proc, grace=5)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


async def _consume(
    dsn: str, entrypoint: str, sleep_sec: float, heartbeat_sec: float, dequeue_timeout_sec: float
) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint(entrypoint)
    async def record(job: Any) -> None:
        sys.stdout.write(f"{job.id} {time.time()} {os.getpid()}\n")
        sys.stdout.flush()
        if sleep_sec:
            await asyncio.sleep(sleep_sec)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    await pgq.run(
        heartbeat_timeout=timedelta(seconds=heartbeat_sec),
        dequeue_timeout=timedelta(seconds=dequeue_timeout_sec),
    )


if __name__ == "__main__":
    dsn, entry, sleep, beat, poll = sys.argv[1:6]
    main = _consume(dsn, entry, float(sleep), float(beat), float(poll))
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:
        asyncio.run(main)
