"""A pod as the reactor sees it: what any provider's pod is normalised to.

Plain data, no I/O: the policy compares these with the workers table on a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

FLEET_ENV = "GPU_REACTOR_FLEET"

# Normalised pod states (Runpod's own names).
LIVE_POD_STATES = frozenset({"PROVISIONING", "STARTING", "RUNNING"})
DEAD_POD_STATES = frozenset({"EXITED", "ERROR", "TERMINATED"})


@dataclass(frozen=True)
class Pod:
    id: str
    name: str
    status: str
    gpu_type: str | None = None
    cost_per_hr: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status not in DEAD_POD_STATES

    def belongs_to(self, fleet: str) -> bool:
        """Both marks: the fleet's name prefix and its env marker."""
        return self.name.startswith(f"{fleet}-") and self.env.get(FLEET_ENV) == fleet
