"""The Runpod REST v2 create contract, as the fake server enforces it (422 on a breach).

From ../shared/runpod-v2.md: unknown fields are rejected; ``name`` is required, ``image``
unless ``templateId``; ``gpu`` {id, count>=1, allowedCudaVersions | minCudaVersion};
``cloud`` SECURE | COMMUNITY; ``env`` an object of strings; ``mounts`` network or
persistent, not both.
"""

from __future__ import annotations

from typing import Any

CREATE_FIELDS = frozenset(
    {
        "name",
        "image",
        "gpu",
        "cloud",
        "dataCenterIds",
        "disk",
        "env",
        "ports",
        "args",
        "mounts",
        "templateId",
        "registry",
        "startSsh",
        "globalNetworking",
    }
)
GPU_FIELDS = frozenset(
    {"id", "count", "allowedCudaVersions", "minCudaVersion", "minRamPerGpu", "minVcpuCountPerGpu"}
)
CLOUDS = ("SECURE", "COMMUNITY")
ACTIONS = ("start", "stop", "restart", "terminate")


def create_violations(body: Any) -> list[str]:
    """Every way ``body`` breaks the create contract; empty when it is valid."""
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    errors = [f"{key}: unknown field" for key in sorted(set(body) - CREATE_FIELDS)]
    if not _text(body.get("name")):
        errors.append("name: required, a non-empty string")
    if "image" in body and not _text(body["image"]):
        errors.append("image: must be a non-empty string")
    if "image" not in body and "templateId" not in body:
        errors.append("image: required unless templateId is given")
    errors += _gpu(body.get("gpu"))
    if "cloud" in body and body["cloud"] not in CLOUDS:
        errors.append(f"cloud: must be one of {', '.join(CLOUDS)}")
    if "dataCenterIds" in body and not _texts(body["dataCenterIds"]):
        errors.append("dataCenterIds: must be a list of strings")
    if "disk" in body and not _count(body["disk"], 1):
        errors.append("disk: must be an integer >= 1")
    env = body.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        errors.append("env: must be an object of string values")
    if "ports" in body and not _texts(body["ports"]):
        errors.append("ports: must be a list of strings")
    if "args" in body and not isinstance(body["args"], str):
        errors.append("args: must be a string")
    if "mounts" in body:
        errors += _mounts(body["mounts"])
    return errors


def _gpu(gpu: Any) -> list[str]:
    if gpu is None:
        return ["gpu: required"]
    if not isinstance(gpu, dict):
        return ["gpu: must be an object"]
    errors = [f"gpu.{key}: unknown field" for key in sorted(set(gpu) - GPU_FIELDS)]
    if not _text(gpu.get("id")):
        errors.append("gpu.id: required, a GPU type id")
    if "count" in gpu and not _count(gpu["count"], 1):
        errors.append("gpu.count: must be an integer >= 1")
    if "allowedCudaVersions" in gpu and "minCudaVersion" in gpu:
        errors.append("gpu: allowedCudaVersions and minCudaVersion are exclusive")
    return errors


def _mounts(mounts: Any) -> list[str]:
    if not isinstance(mounts, dict) or not mounts:
        return ["mounts: must be an object with 'network' or 'persistent'"]
    errors = [
        f"mounts.{key}: unknown field" for key in sorted(set(mounts) - {"network", "persistent"})
    ]
    if "network" in mounts and "persistent" in mounts:
        errors.append("mounts: at most one kind of mount")
    network = mounts.get("network")
    if network is not None and not (
        isinstance(network, list)
        and network
        and all(
            isinstance(m, dict)
            and set(m) == {"volumeId", "path"}
            and _text(m["volumeId"])
            and _text(m["path"])
            for m in network
        )
    ):
        errors.append("mounts.network: must be a list of {volumeId, path}")
    persistent = mounts.get("persistent")
    if persistent is not None and not (
        isinstance(persistent, dict)
        and set(persistent) == {"size", "path"}
        and _count(persistent["size"], 10)
        and _text(persistent["path"])
    ):
        errors.append("mounts.persistent: must be {size >= 10, path}")
    return errors


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
