"""Fault switches of the fake Runpod v2 server, settable at any time from a test.

Request-level faults take ``method`` (e.g. "GET") and ``path`` (an fnmatch pattern
relative to /v2, e.g. "/pods", "/pods/*"); None matches anything. ``n`` is how many
matching requests are hit (None: every one until ``clear()``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

CORRUPTIONS = ("truncated", "garbage", "cut", "wrong_shape")


@dataclass
class Rule:
    remaining: int | None
    method: str | None
    path: str | None

    def take(self, method: str, path: str) -> bool:
        """Whether this rule hits the request (and count it)."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


@dataclass
class Faults:
    # --- create refusals -------------------------------------------------------------------
    no_capacity_gpus: set[str] = field(default_factory=set)
    """Creates for these GPU type ids answer 400 (no instances available)."""
    no_capacity_data_centers: set[str] = field(default_factory=set)
    """No GPU has capacity in these data centers."""
    capacity_errors: int = 0
    """The next N creates answer 400 whatever they ask for."""
    forbidden_gpus: set[str] = field(default_factory=set)
    """Creates for these GPU type ids answer 403 (no access to that pool)."""
    insufficient_balance: bool = False
    """Every create answers 402 while set."""
    create_fails_after_pod: int = 0
    """The next N creates make the pod (hooks run) and then answer 500."""
    misplacements: list[tuple[int, str]] = field(default_factory=list)
    """(N, data center): the next N creates place their pod there, whatever they asked
    for (``dataCenterIds`` is only a preference)."""
    list_lag_sec: float = 0.0
    """A pod made through POST /pods is listed only this long (server clock) after."""
    # --- request-level faults ----------------------------------------------------------------
    rate_limits: list[tuple[Rule, float]] = field(default_factory=list)
    server_errors: list[tuple[Rule, int]] = field(default_factory=list)
    delays: list[tuple[Rule, float]] = field(default_factory=list)
    corruptions: list[tuple[Rule, str | bytes]] = field(default_factory=list)
    denials: list[tuple[Rule, None]] = field(default_factory=list)

    def rate_limit_next(
        self,
        n: int | None = 1,
        *,
        retry_after: float = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` matching requests answer 429 with ``Retry-After``."""
        self.rate_limits.append((Rule(n, method, path), retry_after))

    def fail_next(
        self,
        n: int | None = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` matching requests answer ``status`` (5xx, or any status a test
        wants to see handled) without doing anything; exempt from the contract check."""
        self.server_errors.append((Rule(n, method, path), status))

    def deny(
        self, n: int | None = None, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Matching requests answer 403: the key is valid but has no access to them."""
        self.denials.append((Rule(n, method, path), None))

    def misplace_next(self, data_center: str, n: int = 1) -> None:
        """The next ``n`` creates place their pod in ``data_center``."""
        self.misplacements.append((n, data_center))

    def delay(
        self,
        seconds: float,
        n: int | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Matching requests are answered ``seconds`` late (after doing their work)."""
        self.delays.append((Rule(n, method, path), seconds))

    def corrupt_next(
        self,
        n: int | None = 1,
        *,
        kind: str | bytes = "truncated",
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Matching answers' bodies are spoilt: ``truncated`` (half the JSON, honest length),
        ``cut`` (connection closed mid-body), ``garbage`` (an HTML page), ``wrong_shape``
        (valid JSON of the wrong shape), or the given bytes verbatim."""
        if isinstance(kind, str) and kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}; one of {CORRUPTIONS} or bytes")
        self.corruptions.append((Rule(n, method, path), kind))

    def clear(self) -> None:
        """Back to a healthy server."""
        fresh = Faults()
        for name in vars(fresh):
            setattr(self, name, getattr(fresh, name))

    # --- used by the server --------------------------------------------------------------------
    def rate_limit_for(self, method: str, path: str) -> float | None:
        return _first(self.rate_limits, method, path)

    def server_error_for(self, method: str, path: str) -> int | None:
        return _first(self.server_errors, method, path)

    def denied(self, method: str, path: str) -> bool:
        return any(rule.take(method, path) for rule, _ in self.denials)

    def take_misplacement(self) -> str | None:
        while self.misplacements:
            n, data_center = self.misplacements[0]
            if n <= 1:
                self.misplacements.pop(0)
            else:
                self.misplacements[0] = (n - 1, data_center)
            if n >= 1:
                return data_center
        return None

    def delay_for(self, method: str, path: str) -> float | None:
        return _first(self.delays, method, path)

    def corruption_for(self, method: str, path: str) -> str | bytes | None:
        return _first(self.corruptions, method, path)

    def take_capacity_error(self) -> bool:
        if self.capacity_errors > 0:
            self.capacity_errors -= 1
            return True
        return False

    def take_create_failure(self) -> bool:
        if self.create_fails_after_pod > 0:
            self.create_fails_after_pod -= 1
            return True
        return False


def _first(rules: list[tuple[Rule, T]], method: str, path: str) -> T | None:
    for rule, value in rules:
        if rule.take(method, path):
            return value
    return None
