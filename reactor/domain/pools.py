"""GPU pools: each kind of task on the GPUs it needs, with its own limits.

A pool is a name and the settings of its workers: the environment's, with the keys its
``[pools.NAME]`` table of POOLS_FILE sets (reactor/pools_file.py reads and checks the
file). Without POOLS_FILE there is one pool, ``default``, made from the environment
exactly as before pools: every worker belongs to it and the policy runs unchanged.

A worker belongs to the pool its row names (workers.pool). A row naming no pool, or
``default`` where the file has no pool of that name, belongs to the first pool: the
workers of a fleet that started before pools, and the app's own self-registered workers.
A row naming a pool the file no longer has belongs to none: its worker is drained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reactor.domain.globs import compile_globs
from reactor.domain.model import WorkerState
from reactor.settings import Settings

DEFAULT_POOL = "default"
EVERY_TYPE = ("*",)


@dataclass(frozen=True)
class Pool:
    name: str
    settings: Settings  # the environment's, with the pool's own keys

    @property
    def patterns(self) -> tuple[str, ...]:
        """The task types it runs: names or globs (TASK_TYPES; empty: every type)."""
        return tuple(self.settings.task_types) or EVERY_TYPE

    @property
    def runs(self) -> Callable[[str | None], bool]:
        return compile_globs(self.patterns)


@dataclass(frozen=True)
class Pools:
    """The pools in file order, and the environment's settings, whose MAX_ACTIVE_GPUS and
    MAX_HOURLY_SPEND_USD cap the fleet as a whole."""

    pools: tuple[Pool, ...]
    settings: Settings
    source: str | None = None  # the POOLS_FILE they were read from; None: the environment
    _by_name: dict[str, Pool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("at least one pool")
        object.__setattr__(self, "_by_name", {p.name: p for p in self.pools})

    @classmethod
    def single(cls, settings: Settings) -> Pools:
        """One pool, ``default``, made from the environment (no POOLS_FILE)."""
        return cls((Pool(DEFAULT_POOL, settings),), settings)

    @property
    def routed(self) -> bool:
        """Whether demand is routed between pools (a POOLS_FILE is in force)."""
        return self.source is not None

    @property
    def first(self) -> Pool:
        return self.pools[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pools)

    def get(self, name: str | None) -> Pool | None:
        return self._by_name.get(name) if name is not None else None

    def __iter__(self) -> Iterator[Pool]:
        return iter(self.pools)

    def __len__(self) -> int:
        return len(self.pools)

    def pool_of(self, worker: WorkerState) -> Pool | None:
        """The pool a worker belongs to; None when its pool left the file."""
        return self.pool_named(worker.pool)

    def pool_named(self, name: str | None) -> Pool | None:
        """The pool a row's ``pool`` value means (see the module's docstring)."""
        if not self.routed:
            return self.first
        pool = self.get(name)
        if pool is not None:
            return pool
        return self.first if name is None or name == DEFAULT_POOL else None

    def runs(self, task_type: str | None) -> bool:
        """Whether any pool runs this task type."""
        return any(p.runs(task_type) for p in self.pools)

    def patterns(self) -> tuple[str, ...] | None:
        """Every pool's task types, for the queue's counts; None when some pool runs all."""
        out: dict[str, None] = {}
        for pool in self.pools:
            if pool.patterns == EVERY_TYPE or "*" in pool.patterns:
                return None
            out.update(dict.fromkeys(pool.patterns))
        return tuple(out)
