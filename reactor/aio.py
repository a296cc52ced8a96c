"""Small asyncio helpers: interruptible waits."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; return whether it is set."""
    if timeout is not None and timeout <= 0:
        return event.is_set()
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
    # arrives as its inner awaitable completes (CPython gh-86296), leaving the caller
    # running on after it was cancelled.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


async def wait_any(events: list[asyncio.Event], timeout: float | None) -> None:
    """Return when any of ``events`` is set or ``timeout`` passes."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
