"""Owned tasks: a term's tasks end with it, and the shutdown ladder ends a service.

``Term`` holds the tasks one leadership term starts (in its TaskGroup) and cancels every
one still running when the term ends, so none outlives the leadership that started it.

The shutdown ladder: stop event -> graceful wait -> cancel -> hard deadline.
``run_until_stopped`` runs a service's root coroutine as a named task until it returns
or the stop event is set. Then it gives the task the grace (REACTOR_SHUTDOWN_GRACE_SEC)
to finish what it is doing and let go on its own; past it, cancels the task; and past
the hard deadline after the cancel, logs the stack of every task still running and
reports that the task did not unwind, so the caller exits non-zero instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from reactor.aio import wait_any

log = logging.getLogger(__name__)

CANCEL_DEADLINE_SEC = 10.0  # after the cancel, how long the cancellation may take to unwind


@dataclass
class Term:
    """The tasks of one term, started in its TaskGroup: a failure of any ends the term
    (the group cancels the rest and raises it); ``end`` cancels those still running."""

    group: asyncio.TaskGroup
    ended: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """The task running ``coro``, or None (and ``coro`` closed) once the term ends."""
        try:
            if self.ended:
                raise RuntimeError("the term has ended")
            task = self.group.create_task(coro, name=name)
        except RuntimeError:  # ended, or its group is shutting down after a failure
            coro.close()
            return None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def end(self) -> None:
        self.ended = True
        for task in list(self._tasks):
            task.cancel()


async def run_until_stopped(
    main: Coroutine[Any, Any, None],
    stop: asyncio.Event,
    *,
    name: str,
    grace: float,
    cancel_deadline: float = CANCEL_DEADLINE_SEC,
) -> bool:
    """Run ``main`` as the task ``name`` until it ends or ``stop`` is set, then climb the
    ladder. True once the task has ended (its exception is raised here); False when it
    still runs past the hard deadline (every running task's stack is logged). Cancelled
    from outside, the task is cancelled with it."""
    task = asyncio.create_task(main, name=name)
    try:
        if await _ends(task, stop, None):
            return _outcome(task)
        log.info("stopping", extra={"grace_sec": grace})
        if await _ends(task, None, grace):
            return _outcome(task)
        log.warning("stop_grace_passed", extra={"grace_sec": grace})
        task.cancel()
        if await _ends(task, None, cancel_deadline):
            return _outcome(task)
        log_running_tasks(f"{name} did not unwind {cancel_deadline:g}s after its cancel")
        return False
    finally:
        if not task.done() and not task.cancelling():
            task.cancel()


async def _ends(
    task: asyncio.Task[None], stop: asyncio.Event | None, timeout: float | None
) -> bool:
    """Wait until ``task`` ends, ``stop`` is set or ``timeout`` passes; whether it ended."""
    if stop is None:
        await asyncio.wait({task}, timeout=timeout)
    else:
        ended = asyncio.Event()
        task.add_done_callback(lambda _task: ended.set())
        await wait_any([ended, stop], timeout)
    return task.done()


def _outcome(task: asyncio.Task[None]) -> bool:
    if not task.cancelled():
        task.result()  # the task's own failure surfaces here
    return True


def log_running_tasks(why: str) -> None:
    """Log where every task of this loop but the caller's is waiting, one line each."""
    current = asyncio.current_task()
    running = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    log.error("tasks_did_not_unwind", extra={"reason": why, "tasks": len(running)})
    for task in sorted(running, key=lambda t: t.get_name()):
        log.error("task_still_running", extra={"task": task.get_name(), "stack": task_stack(task)})


def task_stack(task: asyncio.Task[Any]) -> str:
    """The task's await chain, outermost first, as a traceback reads: the coroutine it
    runs and every coroutine that one awaits, down to where it waits.
    (``Task.print_stack`` shows the outermost frame only.)"""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            frames.append((frame, frame.f_lineno))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "".join(traceback.StackSummary.extract(frames).format())
