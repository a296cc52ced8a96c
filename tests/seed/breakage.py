"""Known breakages: tests that assert the right behaviour and fail today, for a reason
they name precisely.

``@breaks_today(reason, raises=..., match=...)`` marks a test ``xfail(strict=True)``
that counts as expected only when it fails with ``raises`` and a message matching
``match``: that failure is turned into :class:`KnownBreakage`, the one exception the
xfail accepts. Any other failure fails the suite as usual, and so does a pass (strict):
whoever fixes the breakage is told to remove the mark.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


class KnownBreakage(Exception):
    """The failure a ``breaks_today`` mark names."""


def breaks_today(reason: str, *, raises: type[BaseException], match: str) -> Callable[[F], F]:
    pattern = re.compile(match, re.DOTALL)

    def decorate(test: F) -> F:
        @functools.wraps(test)
        async def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                await test(*args, **kwargs)
            except raises as e:
                if pattern.search(str(e)):
                    raise KnownBreakage(f"{reason} ({type(e).__name__}: {e})") from e
                raise

        marked = pytest.mark.xfail(strict=True, raises=KnownBreakage, reason=reason)(wrapper)
        return marked  # type: ignore[return-value]

    return decorate
