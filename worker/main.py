"""Entry point (``gpu-worker``, ``python -m worker``): start-up, signals, supervision.

Exit codes: 0 after a clean drain (SIGTERM with the task finished, or the reactor set the
status to terminating / error / terminated); 1 when the database cannot be reached or
used at start-up, when a task had to be failed back because the worker was stopped before
finishing it, or when one of its own tasks crashed; 2 when the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

import asyncpg

from worker import __version__
from worker.db import Link, describe, open_with_retries
from worker.errors import ConfigError, DatabaseUnavailable, StartupError
from worker.gpu import GpuProbe
from worker.heartbeat import Heartbeat
from worker.listener import Listener
from worker.logs import redact_dsn, register_secret, scrub, setup_logging
from worker.processors import Registry, build_registry
from worker.runner import FINAL_WRITE_SEC, Runner
from worker.settings import Settings, describe_variables, load_settings
from worker.state import WorkerState

log = logging.getLogger("worker")

LISTENER_CHECK_SEC = 30.0


class Worker:
    """The three named tasks of a worker - heartbeat, listener, runner - and their life."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.state = WorkerState(settings.worker_id)
        self.links = {
            name: Link(
                settings.dsn,
                name=name,
                worker_id=settings.worker_id,
                timeout=settings.worker_db_timeout_sec,
                token=settings.token,
            )
            for name in ("claim", "heartbeat", "listen")
        }
        self.heartbeat = Heartbeat(
            link=self.links["heartbeat"],
            state=self.state,
            gpu=GpuProbe(),
            interval=settings.heartbeat_interval_sec,
            static={
                "task_types": settings.worker_task_types or None,
                "processors": registry.describe(),
            },
        )
        self.runner = Runner(
            link=self.links["claim"], state=self.state, registry=registry, settings=settings
        )
        self.listener = Listener(
            link=self.links["listen"],
            worker_id=settings.worker_id,
            on_work=self.runner.wake_up,
            on_status=self.heartbeat.poke,
            check_interval=LISTENER_CHECK_SEC,
            cap=settings.worker_reconnect_max_sec,
        )
        self.crashed = False
        self._grace_timer: asyncio.TimerHandle | None = None

    async def run(self) -> int:
        try:
            await self._start()
            if not self.state.draining.is_set():
                self._install_signals()
                await self._supervise()
            return await self._finish()
        finally:
            for link in self.links.values():
                try:
                    await link.close()
                except Exception:  # closing on the way out: give up politely
                    link.reset()

    # --- start-up --------------------------------------------------------------------
    async def _start(self) -> None:
        link = self.links["heartbeat"]
        where = redact_dsn(self.settings.dsn)
        await open_with_retries(
            link,
            retries=self.settings.worker_connect_retries,
            cap=self.settings.worker_reconnect_max_sec,
        )
        try:
            status = await self.heartbeat.beat()
            released = await link.release_held()
        except (asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError) as exc:
            raise StartupError(
                f"the database at {where} has no gpu-reactor schema "
                f"({describe(exc)}): run 'gpu-reactor migrate' first"
            ) from exc
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StartupError(
                f"the login of {where} may not call the worker functions "
                f"({describe(exc)}): make it a member of role gpu_worker"
            ) from exc
        except (DatabaseUnavailable, asyncpg.PostgresError) as exc:
            raise StartupError(f"the first heartbeat to {where} failed: {exc}") from exc
        if released:
            log.warning(
                "held_tasks_released",
                extra={"worker_id": self.settings.worker_id, "tasks": released},
            )
        log.info(
            "worker_started",
            extra={
                "worker_id": self.settings.worker_id,
                "status": status,
                "version": __version__,
                "database": where,
                "task_types": self.settings.worker_task_types or "all",
                "processors": self.registry.describe(),
                "gpu": self.heartbeat.gpu.executable is not None,
            },
        )

    # --- signals ---------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig.name)

    def _on_signal(self, name: str) -> None:
        if self.state.stop_signal is None:
            self.state.stop_signal = name
            self.stop(name)
        else:
            self.state.force(f"second {name}")

    def stop(self, reason: str) -> None:
        """Claim nothing more; the task in hand has WORKER_GRACE_SEC to finish."""
        grace = self.settings.worker_grace_sec
        self.state.drain(reason, grace=grace)
        if self._grace_timer is None:
            self._grace_timer = asyncio.get_running_loop().call_later(
                grace, self.state.force, f"grace period of {grace:g}s passed"
            )

    # --- supervision -----------------------------------------------------------------
    async def _supervise(self) -> None:
        """Run until the runner returns; a background task that dies stops the worker."""
        runner = asyncio.create_task(self.runner.run(), name="runner")
        background = {
            asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
            asyncio.create_task(self.listener.run(), name="listener"),
        }
        try:
            pending = {runner, *background}
            while not runner.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {runner}:
                    self._crashed(task)
            if runner.exception() is not None:
                self._crashed(runner)
        finally:
            for task in (*background, runner):
                task.cancel()
            await asyncio.gather(*background, runner, return_exceptions=True)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        self.crashed = True
        log.error(
            "task_crashed",
            extra={"task": task.get_name(), "error": describe(exc) if exc else "cancelled"},
            exc_info=exc,
        )
        if task.get_name() != "runner":
            self.stop(f"{task.get_name()} crashed")

    # --- the way out -----------------------------------------------------------------
    async def _finish(self) -> int:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        await self._report_drained()
        code = 1 if self.crashed or self.runner.abandoned else 0
        log.info(
            "worker_exited",
            extra={
                "worker_id": self.state.worker_id,
                "exit_code": code,
                "reason": self.state.drain_reason,
                "tasks_completed": self.state.completed,
                "tasks_failed": self.state.failed,
                "leases_lost": self.state.lease_lost,
            },
        )
        return code

    async def _report_drained(self) -> None:
        """Tell the reactor this worker holds nothing and is leaving (bounded retries)."""
        deadline = time.monotonic() + FINAL_WRITE_SEC
        link = self.links["claim"]
        while True:
            try:
                accepted = await link.report_drained()
            except (DatabaseUnavailable, asyncpg.PostgresError) as exc:
                if time.monotonic() + 0.5 >= deadline or not isinstance(exc, DatabaseUnavailable):
                    log.error(
                        "drain_report_failed",
                        extra={"worker_id": self.state.worker_id, "error": str(exc)},
                    )
                    return
                await asyncio.sleep(0.5)
                continue
            log.info(
                "drained_reported", extra={"worker_id": self.state.worker_id, "accepted": accepted}
            )
            return


def _parse_args(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="gpu-worker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Claims tasks from Postgres and runs them on this machine's GPU. "
        "Configured by environment variables only.",
        epilog="environment variables:\n" + describe_variables(),
    )
    parser.add_argument("--version", action="version", version=f"gpu-worker {__version__}")
    parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _parse_args(argv)
    try:
        settings = load_settings()
        registry = build_registry(settings)
    except ConfigError as exc:
        print(f"gpu-worker: {exc}", file=sys.stderr)
        return 2
    register_secret(_password(settings.dsn))
    register_secret(settings.token)
    setup_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(Worker(settings, registry).run())
    except StartupError as exc:
        print(f"gpu-worker: {scrub(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _password(dsn: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(dsn).password
    except ValueError:
        return None
