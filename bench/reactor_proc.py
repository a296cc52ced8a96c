"""The reactor in a process of its own, as it runs in production, instrumented for the bench.

``python -m bench.reactor_proc`` reads the reactor's settings from the environment like
``gpu-reactor run`` (HTTP off) and prints one JSON line per reconcile on stdout:
``{"event": "reconcile", "t": <unix time>, "kind", "queued", "desired", "ms", "actions"}``.
BENCH_PROVIDER=null gives it a provider with no pods (for runs that never spawn).
SIGTERM stops it. ``ReactorProcess`` is the bench's handle on such a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import wait_until

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NullProvider:
    """A provider with no pods: for runs where MAX_ACTIVE_GPUS=0 forbids spawning."""

    name = "null"

    async def create(self, spec: Any) -> Any:
        raise AssertionError("the null provider never creates a pod")

    async def terminate(self, pod_id: str) -> None:
        return None

    async def list_pods(self) -> list[Any]:
        return []

    async def get(self, pod_id: str) -> Any:
        return None

    async def estimated_price(self) -> float | None:
        return 0.0

    async def close(self) -> None:
        return None


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


async def _main() -> None:
    from reactor.engine.service import Reactor
    from reactor.settings import load_settings

    class BenchReactor(Reactor):
        def _record(self, result: Any) -> None:
            super()._record(result)
            _emit(
                {
                    "event": "reconcile",
                    "t": time.time(),
                    "kind": result.kind,
                    "queued": result.snapshot.queued,
                    "desired": result.desired,
                    "ms": round(result.duration_ms, 3),
                    "actions": [[a.kind, a.outcome] for a in result.actions],
                }
            )

    settings = load_settings()
    provider = NullProvider() if os.environ.get("BENCH_PROVIDER") == "null" else None
    reactor = BenchReactor(settings, provider=provider)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, reactor.stop_event.set)
    await reactor.run()
    _emit({"event": "stopped", "t": time.time(), "reconciles": reactor.state.reconciles})


class ReactorProcess:
    """Start, watch and stop ``python -m bench.reactor_proc`` with the given settings."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {
            **os.environ,
            "REACTOR_HTTP_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            **env,
        }
        self.events: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._errors: asyncio.Task[None] | None = None
        self.stderr_tail: list[str] = []

    async def start(self, *, ready_timeout: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.reactor_proc",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=_REPO,
        )
        self._reader = asyncio.create_task(self._read(), name="bench-reactor-stdout")
        self._errors = asyncio.create_task(self._read_errors(), name="bench-reactor-stderr")
        await self.wait_for(
            lambda e: e["event"] == "reconcile",
            timeout=ready_timeout,
            what="the reactor's first reconcile",
        )

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    async def _read_errors(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr_tail = (self.stderr_tail + [line.decode(errors="replace")])[-20:]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def reconciles(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "reconcile"]

    async def wait_for(
        self,
        match: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        after: int = 0,
        what: str = "a reactor event",
    ) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def check() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                await asyncio.sleep(0.2)  # let stderr drain
                raise RuntimeError(
                    f"the reactor exited ({self.proc.returncode}) while waiting "
                    f"for {what}: {''.join(self.stderr_tail)[-1500:]}"
                )
            found.extend(e for e in self.events[after:] if match(e))
            return bool(found)

        try:
            await wait_until(check, timeout=timeout, what=what)
        except TimeoutError as exc:  # say what the reactor said meanwhile
            raise TimeoutError(f"{exc}: {''.join(self.stderr_tail)[-1500:]}") from None
        return found[0]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the reactor process so far (/proc/<pid>/stat)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in (self._reader, self._errors):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(_main())
    except ImportError:
        asyncio.run(_main())
