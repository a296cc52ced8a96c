"""The Runpod REST v2 request contract the fake server enforces, from Runpod's own OpenAPI
document (tests/contract/runpod-v2-openapi.json).

A body the operation's request schema refuses is a 422 whose ``errors`` list each
violation (createPod: "The body does not match the contract"). A body that conforms but
breaks a rule the document states in prose, enforced at the handler, is a 400
(createPod: "either it breaks a cross-field rule, or this GPU and data center combination
could not be placed"): exactly one of ``gpu`` or ``cpu``; a non-empty
``allowedCudaVersions`` with ``minCudaVersion``; both mount kinds; a persistent mount on a
CPU pod. Unknown GPU ids and network volumes outside the pod's data center are the
server's to judge (runpod_v2.py).
"""

from __future__ import annotations

from typing import Any

from tests.contract.openapi import runpod_v2

VALIDATION_FAILED = "Request validation failed."


def body_violations(method: str, path: str, body: Any) -> list[str]:
    """Every way ``body`` breaks the request schema of ``method path`` (relative to /v2)."""
    return runpod_v2().body_errors(method, path, body)


def create_rule_broken(body: dict[str, Any]) -> str | None:
    """The cross-field rule a schema-valid create body breaks (a 400), if any."""
    if ("gpu" in body) == ("cpu" in body):
        return "Exactly one of gpu or cpu must be set."
    gpu = body.get("gpu") or {}
    if gpu.get("allowedCudaVersions") and "minCudaVersion" in gpu:
        return "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive."
    mounts = body.get("mounts") or {}
    if "persistent" in mounts and "network" in mounts:
        return "At most one of mounts.persistent and mounts.network may be set."
    if "persistent" in mounts and "cpu" in body:
        return "mounts.persistent is not supported on CPU pods."
    return None
