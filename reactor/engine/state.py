"""What the reactor knows and did, kept in memory for /status and `once`."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from reactor.domain.model import Snapshot
from reactor.domain.pools import Pools
from reactor.domain.routing import Routing
from reactor.domain.spawn_gate import SpawnGate
from reactor.engine.history import History


@dataclass
class ActionRecord:
    at: float  # unix time
    kind: str
    outcome: str
    reason: str = ""
    worker_id: str | None = None
    pod_id: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "worker_id": self.worker_id,
            "pod_id": self.pod_id,
            "detail": self.detail,
        }


@dataclass
class ListenerHealth:
    connected: bool = False
    since: float | None = None
    last_event_at: float | None = None
    last_probe_ok_at: float | None = None
    reconnects: int = 0
    last_error: str | None = None


@dataclass
class ReactorState:
    role: str = "starting"  # starting | standby | leader | stopping
    started_at: float = field(default_factory=time.time)
    snapshot: Snapshot | None = None
    desired_workers: int | None = None
    last_reconcile_at: float | None = None
    last_reconcile_kind: str | None = None
    last_reconcile_ms: float | None = None
    last_sweep_at: float | None = None
    reconciles: int = 0
    last_error: str | None = None
    listener: ListenerHealth = field(default_factory=ListenerHealth)
    actions: deque[ActionRecord] = field(default_factory=lambda: deque(maxlen=200))
    # Spawn pauses, the start-failure breaker and the expected price: read from the gate,
    # never copied (None before the reactor opens, or a CLI read without one).
    gate: SpawnGate | None = None
    db_ok: bool = False
    # The last hour of snapshots, for the web console's charts (reactor/engine/history.py).
    history: History = field(default_factory=History)
    # The GPU pools in force (None before the reactor has read them), each pool's spawn
    # gate, and the last reconcile's routing of demand between them (with POOLS_FILE).
    pools: Pools | None = None
    gates: dict[str, SpawnGate] = field(default_factory=dict)
    routing: Routing | None = None
    pool_desired: dict[str, int] = field(default_factory=dict)

    def record(self, record: ActionRecord) -> None:
        self.actions.append(record)
