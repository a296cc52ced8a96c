"""The garbage collector paused around one pure decision.

``decide`` and ``next_deadline`` allocate a few tuples per worker and free them by
reference counting; none of it is a cycle. A collection that lands in the call is pure
cost (at 10,000 workers it was 28 % of the instructions, and a full one doubled the
call's time), so the reactor pauses collection for the length of the call and resumes it
after: cycles made elsewhere are collected as before.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
