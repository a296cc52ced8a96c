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

# podAction: "RUNNING allows stop/restart/terminate; EXITED and ERROR allow
# start/terminate; PROVISIONING and STARTING allow stop/terminate."
_ACTIONS = {
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "TERMINATED": [],
}
# Continental regions of the data centers' id prefixes (DataCenterRegion).
_REGIONS = {"US": "NORTH_AMERICA", "CA": "NORTH_AMERICA", "EU": "EUROPE", "AP": "ASIA"}
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
    mounts: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # the create body, verbatim
    listed_from: float = 0.0  # monotonic: the list shows it from then on (listing lag)

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
        """The Pod schema of the OpenAPI document, every required field present."""
        status = self.status_at(now)
        running = status == "RUNNING"
        started = self.phase_start + self.provisioning_sec + self.starting_sec
        return {
            "id": self.id,
            "name": self.name,
            "status": status,
            "actions": self.actions_at(now),
            "image": self.image,
            "args": "",
            "disk": self.disk,
            "mounts": dict(self.mounts),
            "ports": list(self.ports),
            "env": dict(self.env),
            "registry": None,
            "gpu": {"id": self.gpu_id, "count": self.gpu_count},
            "cloud": self.cloud,
            "dataCenterId": self.data_center_id,
            "cudaVersion": "12.4",
            "ssh": {
                "proxy": self._ssh_proxy() if status != "PROVISIONING" else None,
                "direct": None,
            },
            "template": None,
            "cost": self.cost_at(now),
            "locked": False,
            "globalNetworking": {"enabled": False},
            "runtime": _runtime(now - started, self.gpu_count) if running else None,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.created_at) if running else None,
            # Fields a later spec might add: clients must ignore them.
            "lastStatusChange": f"{status} at {iso(datetime.now(UTC))}",
            "interruptible": False,
        }

    def _ssh_proxy(self) -> dict[str, Any]:
        user = f"{self.id}-64411eb2"
        return {
            "host": "ssh.runpod.io",
            "port": 22,
            "username": user,
            "command": f"ssh {user}@ssh.runpod.io",
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
            "pool": None,
            "manufacturer": "NVIDIA",
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


def data_center(dc: str) -> dict[str, Any]:
    """One DataCenter of ``GET /v2/catalog/datacenters``."""
    return {
        "id": dc,
        "name": dc,
        "region": _REGIONS.get(dc.split("-")[0], "UNKNOWN"),
        "networkVolumeTypes": ["STANDARD"],
        "compliance": [],
        "globalNetwork": False,
    }


def network_volume(volume_id: str, dc: str) -> dict[str, Any]:
    """The NetworkVolume of ``GET /v2/network-volumes/{id}``."""
    return {"id": volume_id, "name": volume_id, "size": 50, "dataCenter": dc, "type": "STANDARD"}
