"""Pods and the GPU catalog of the fake Runpod v2 server."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# GPU type id -> (display name, memory GB, secure USD/h, community USD/h)
DEFAULT_GPU_TYPES: dict[str, tuple[str, int, float, float]] = {
    "NVIDIA GeForce RTX 4090": ("RTX 4090", 24, 0.69, 0.34),
    "NVIDIA RTX A6000": ("RTX A6000", 48, 0.49, 0.33),
    "NVIDIA L4": ("L4", 24, 0.43, 0.24),
    "NVIDIA A40": ("A40", 48, 0.40, 0.35),
    "NVIDIA H100 80GB HBM3": ("H100 SXM", 80, 2.99, 2.69),
}
DEFAULT_DATA_CENTERS = ("US-TX-3", "EU-RO-1", "CA-MTL-1")

_ACTIONS = {
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["terminate"],
    "TERMINATED": [],
}
_ID_CHARS = string.ascii_lowercase + string.digits


def new_pod_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(14))


def iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z") if when else None


@dataclass
class FakePod:
    """One pod as the fake keeps it. ``status_at(now)`` walks the documented lifecycle."""

    id: str
    name: str
    image: str
    env: dict[str, str]
    gpu_id: str
    gpu_count: int
    cloud: str
    data_center_id: str | None
    price_per_gpu: float
    phase_start: float  # monotonic: when PROVISIONING began
    provisioning_sec: float
    starting_sec: float
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    forced_status: str | None = None  # EXITED / ERROR / TERMINATED, or a pinned status
    disk: int = 20
    ports: list[str] = field(default_factory=list)
    mounts: dict[str, Any] | None = None
    body: dict[str, Any] = field(default_factory=dict)  # the create body, verbatim

    def status_at(self, now: float) -> str:
        if self.forced_status is not None:
            return self.forced_status
        elapsed = now - self.phase_start
        if elapsed < self.provisioning_sec:
            return "PROVISIONING"
        if elapsed < self.provisioning_sec + self.starting_sec:
            return "STARTING"
        return "RUNNING"

    def cost_at(self, now: float) -> float:
        if self.status_at(now) in ("EXITED", "TERMINATED"):
            return 0.0
        return round(self.price_per_gpu * self.gpu_count, 4)

    def actions_at(self, now: float) -> list[str]:
        return list(_ACTIONS.get(self.status_at(now), ["terminate"]))

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status_at(now)
        running = status == "RUNNING"
        started = self.phase_start + self.provisioning_sec + self.starting_sec
        return {
            "id": self.id,
            "name": self.name,
            "status": status,
            "actions": self.actions_at(now),
            "image": self.image,
            "env": dict(self.env),
            "ports": list(self.ports),
            "gpu": {"id": self.gpu_id, "count": self.gpu_count},
            "cloud": self.cloud,
            "dataCenterId": self.data_center_id,
            "cost": self.cost_at(now),
            "runtime": _runtime(now - started, self.gpu_count) if running else None,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.created_at) if running else None,
            "ssh": None,
            "mounts": self.mounts,
            "cudaVersion": "12.4",
            "disk": self.disk,
            # Fields a later spec might add: clients must ignore them.
            "lastStatusChange": f"{status} at {iso(datetime.now(UTC))}",
            "interruptible": False,
        }


def _runtime(uptime: float, gpus: int) -> dict[str, Any]:
    return {
        "uptime": int(max(uptime, 0)),
        "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(gpus)],
        "ports": [],
    }


def catalog(
    gpu_types: dict[str, tuple[str, int, float, float]],
    data_centers: list[str],
    no_capacity: set[str],
    availability: bool,
) -> dict[str, Any]:
    """The ``GET /v2/catalog/gpus`` body."""
    gpus = []
    for gpu_id, (name, memory, secure, community) in gpu_types.items():
        item: dict[str, Any] = {
            "id": gpu_id,
            "name": name,
            "manufacturer": "Nvidia",
            "memory": memory,
            "secure": secure > 0,
            "community": community > 0,
            "price": {"secure": secure, "community": community},
            "maxCount": {"secure": 8, "community": 8},
        }
        if availability:
            level = "NONE" if gpu_id in no_capacity else "HIGH"
            item["availability"] = level
            item["dataCenters"] = [
                {"id": dc, "name": dc, "availability": level} for dc in data_centers
            ]
        gpus.append(item)
    return {"gpus": gpus}
