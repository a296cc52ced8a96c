"""What runs a task, chosen by its type.

A processor is an async callable taking the claimed task and returning a JSON-able result;
it fails the task by raising (``ProcessorError`` for a message meant for the task's
error_message, any other exception is described with its traceback's tail).

Resolution for a task type, first match wins:
  1. WORKER_PROCESSORS ``type=spec`` (spec: echo, sleep, command, module:function),
  2. an entry point named after the type in group ``gpu_reactor.processors``,
  3. the built-ins ``echo`` and ``sleep``,
  4. WORKER_PROCESSORS ``*=spec``.
A type with none fails its task with a message saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import logging
import math
import threading
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any, Protocol

from worker.command import CommandProcessor
from worker.db import ClaimedTask
from worker.errors import ConfigError, ProcessorError
from worker.globs import compile_globs
from worker.settings import WILDCARD, Settings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gpu_reactor.processors"
TRACEBACK_TAIL = 1500


class Processor(Protocol):
    name: str

    async def __call__(self, task: ClaimedTask) -> Any: ...


class EchoProcessor:
    """Result = params. For smoke tests and demos."""

    name = "echo"

    async def __call__(self, task: ClaimedTask) -> Any:
        return task.params


class SleepProcessor:
    """``{"seconds": x}``: sleeps x seconds (cancellable), result ``{"slept": x}``."""

    name = "sleep"

    async def __call__(self, task: ClaimedTask) -> Any:
        seconds = task.params.get("seconds") if isinstance(task.params, dict) else None
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ProcessorError('sleep needs params {"seconds": <number >= 0>}')
        await asyncio.sleep(seconds)
        return {"slept": seconds}


class CallableProcessor:
    """A Python function of the task's params: async is awaited; sync runs in a daemon
    thread so the heartbeat keeps beating (a sync function that hangs past the timeout
    cannot be stopped: its thread is abandoned, the task failed all the same)."""

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        self.name = name
        self.fn = fn
        self.is_async = _is_async(fn)

    async def __call__(self, task: ClaimedTask) -> Any:
        if self.is_async:
            return await self.fn(task.params)
        try:
            return await _in_daemon_thread(self.fn, task.params, f"task-{task.id}")
        except asyncio.CancelledError:
            log.warning(
                "processor_thread_abandoned",
                extra={"task_id": str(task.id), "processor": self.name},
            )
            raise


def _is_async(fn: Any) -> bool:
    """A coroutine function, a partial of one, or an object whose __call__ is one."""
    if isinstance(fn, functools.partial):
        return _is_async(fn.func)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def _in_daemon_thread(fn: Callable[[Any], Any], arg: Any, name: str) -> Any:
    """Run ``fn(arg)`` in a daemon thread: unlike the default executor, a thread that never
    returns cannot hold up the worker's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(arg), None)
        except BaseException as exc:  # whatever it is, it is the task's failure
            outcome = (None, exc)
        # RuntimeError: the loop is closed, the worker has moved on (an abandoned thread).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` then the tail of the traceback, for a task's error_message."""
    if isinstance(exc, ProcessorError):
        return str(exc)
    head = f"{type(exc).__name__}: {exc}".strip()
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (
        f"{head}\n\n...{trace[-TRACEBACK_TAIL:]}"
        if len(trace) > TRACEBACK_TAIL
        else f"{head}\n\n{trace}"
    )


def load_callable(spec: str) -> Callable[[Any], Any]:
    """``package.module:function`` (or ``module:Class.method``) -> the callable."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise ConfigError(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]


class Registry:
    """Task type -> processor, resolved once at start-up."""

    def __init__(self, by_type: dict[str, Processor], fallback: Processor | None) -> None:
        self.by_type = by_type
        self.fallback = fallback

    def get(self, task_type: str) -> Processor | None:
        return self.by_type.get(task_type, self.fallback)

    def describe(self) -> dict[str, str]:
        described = {t: p.name for t, p in sorted(self.by_type.items())}
        if self.fallback is not None:
            described[WILDCARD] = self.fallback.name
        return described


def _from_spec(task_type: str, spec: str, settings: Settings) -> Processor:
    if spec == "echo":
        return EchoProcessor()
    if spec == "sleep":
        return SleepProcessor()
    if spec == "command":
        assert settings.worker_command is not None  # checked by Settings
        return CommandProcessor(settings.worker_command, timeout=settings.task_timeout_sec)
    try:
        return CallableProcessor(spec, load_callable(spec))
    except ConfigError as exc:
        raise ConfigError(f"WORKER_PROCESSORS: {task_type}={spec}: {exc}") from exc


def _entry_points(wanted: Callable[[str], bool]) -> dict[str, Processor]:
    found: dict[str, Processor] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not wanted(ep.name):
            continue
        try:
            fn = ep.load()
        except Exception as exc:
            raise ConfigError(
                f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}) "
                f"cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(fn):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not callable")
        found.setdefault(ep.name, CallableProcessor(ep.value, fn))
    return found


def build_registry(settings: Settings) -> Registry:
    """Every processor this worker can run, loaded now so a bad one fails start-up: those
    of the task types WORKER_TASK_TYPES claims (names or globs, as the claim matches
    them; empty: every type)."""
    wanted = _claimed_types(settings.worker_task_types)
    by_type: dict[str, Processor] = {"echo": EchoProcessor(), "sleep": SleepProcessor()}
    by_type.update(_entry_points(wanted))
    fallback = None
    for task_type, spec in settings.worker_processors.items():
        if task_type == WILDCARD:
            fallback = _from_spec(task_type, spec, settings)
        elif wanted(task_type):
            by_type[task_type] = _from_spec(task_type, spec, settings)
    return Registry(by_type, fallback)


def _claimed_types(patterns: list[str]) -> Callable[[str], bool]:
    if not patterns:
        return lambda _task_type: True
    return compile_globs(patterns)


def no_processor_message(task_type: str, worker_id: str) -> str:
    return (
        f"no processor for task type {task_type!r} on worker {worker_id}: map it in "
        "WORKER_PROCESSORS (type=command or type=module:function) or install an entry "
        f"point in group {ENTRY_POINT_GROUP}"
    )
