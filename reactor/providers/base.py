"""What the reactor needs from a GPU provider, and the pod it gets back.

A provider creates, terminates, lists and looks up pods. Implementations: ``runpod``
(REST API v2 over aiohttp) and ``local`` (gpu-worker processes on this machine).
Errors are the ProviderError family of reactor.errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from reactor.domain.pods import DEAD_POD_STATES, FLEET_ENV, LIVE_POD_STATES, Pod

__all__ = [
    "DEAD_POD_STATES",
    "FLEET_ENV",
    "LIVE_POD_STATES",
    "Pod",
    "POOL_ENV",
    "PodSpec",
    "Provider",
    "WORKER_TOKEN_ENV",
]

WORKER_TOKEN_ENV = "WORKER_TOKEN"  # the pod's own credential, see sql/migrations/0012
POOL_ENV = "GPU_REACTOR_POOL"  # the pod's GPU pool, with POOLS_FILE


@dataclass(frozen=True)
class PodSpec:
    """What to create: one pod named after its worker, with the worker's environment."""

    name: str
    env: dict[str, str]


class Provider(Protocol):
    name: str

    async def create(self, spec: PodSpec) -> Pod:
        """Create one pod. Tries the configured candidates (GPU types, data centers) in
        order; raises CapacityError when none has capacity, RequestRejected when every
        one refused the request itself, InsufficientBalance on 402, RateLimited on 429.
        After a failed or unreadable create it looks the pod up by name before trying
        again, so a create never makes two pods."""
        ...

    async def terminate(self, pod_id: str) -> None:
        """Terminate a pod. A pod that is already gone is success."""
        ...

    async def list_pods(self) -> list[Pod]:
        """Every pod the account can see (callers filter by fleet)."""
        ...

    async def get(self, pod_id: str) -> Pod | None:
        """One pod, or None when it does not exist."""
        ...

    async def estimated_price(self) -> float | None:
        """USD/hour one new worker is expected to cost, or None when unknown."""
        ...

    async def close(self) -> None: ...
