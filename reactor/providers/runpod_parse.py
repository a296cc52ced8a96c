"""Lenient readers of Runpod REST v2 bodies.

The v2 spec changed almost weekly in 2026: unknown fields are ignored, optional fields
may be missing or null, and a field of an unexpected type is treated as missing. Only a
body that cannot be what it claims (not an object, no ``pods`` list, a pod without an
``id``, a list that says it is partial) is malformed: that raises ``MalformedBody`` and
the caller turns it into a TransientProviderError. Nothing here raises KeyError or
TypeError on any JSON value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reactor.providers.base import Pod


class MalformedBody(ValueError):
    """The body does not have the documented shape."""


def parse_pod(raw: Any) -> Pod:
    if not isinstance(raw, dict):
        raise MalformedBody(f"a pod is {type(raw).__name__}, not an object")
    pod_id = raw.get("id")
    if not isinstance(pod_id, str) or not pod_id:
        raise MalformedBody("a pod has no id")
    gpu = raw.get("gpu")
    gpu_type = _str(gpu.get("id")) if isinstance(gpu, dict) else None
    status = _str(raw.get("status"))
    return Pod(
        id=pod_id,
        name=_str(raw.get("name")) or "",
        status=status.upper() if status else "UNKNOWN",
        gpu_type=gpu_type,
        cost_per_hr=_money(raw.get("cost")),
        env=_env(raw.get("env")),
        created_at=_when(raw.get("createdAt")),
    )


def parse_pods(body: Any) -> list[Pod]:
    """The pods of ``GET /pods``: ``{"pods": [...]}``, each pod once.

    listPods declares no paging. A ``pagination`` object (an older draft's) is tolerated
    as long as it does not say the list goes on: its cursors are never followed, and a
    list that calls itself partial is malformed, because acting on part of the pods
    would retire workers whose pods are only on the next page and leave those pods
    billing, unseen."""
    if not isinstance(body, dict):
        raise MalformedBody(f"the pod list is {type(body).__name__}, not an object")
    raw_pods = body.get("pods")
    if raw_pods is None and "pods" not in body:
        raise MalformedBody("the pod list has no 'pods'")
    if raw_pods is None:
        raw_pods = []
    if not isinstance(raw_pods, list):
        raise MalformedBody(f"'pods' is {type(raw_pods).__name__}, not a list")
    if _says_more(body.get("pagination")):
        raise MalformedBody(
            "the pod list says it has more pages, but GET /pods declares no paging: "
            "refusing to act on part of the pods"
        )
    pods: dict[str, Pod] = {}
    for item in raw_pods:
        pod = parse_pod(item)
        pods.setdefault(pod.id, pod)
    return list(pods.values())


def _says_more(pagination: Any) -> bool:
    if not isinstance(pagination, dict):
        return False  # absent, or not the shape of any known draft: ignored
    cursor = pagination.get("nextCursor")
    return pagination.get("hasNextPage") is True or (isinstance(cursor, str) and bool(cursor))


def data_center_of(raw: Any) -> str | None:
    """A pod's ``dataCenterId`` (null until the scheduler assigns one)."""
    return _str(raw.get("dataCenterId")) if isinstance(raw, dict) else None


def volume_data_center(body: Any) -> str:
    """The ``dataCenter`` of ``GET /network-volumes/{id}`` (immutable after creation)."""
    where = body.get("dataCenter") if isinstance(body, dict) else None
    if not isinstance(where, str) or not where:
        raise MalformedBody("the network volume has no 'dataCenter'")
    return where


@dataclass(frozen=True)
class CatalogGpu:
    """One GPU type of ``GET /catalog/gpus``: ``id`` is what a create names."""

    id: str | None
    name: str | None
    prices: dict[str, float] | None  # cloud ("secure", "community") -> USD/h; 0: not offered


def catalog_gpus(body: Any) -> list[CatalogGpu]:
    """The GPU types of a ``GET /catalog/gpus`` body, in its order."""
    gpus = body.get("gpus") if isinstance(body, dict) else None
    if not isinstance(gpus, list):
        raise MalformedBody("the GPU catalog has no 'gpus' list")
    out = []
    for item in gpus:
        if isinstance(item, dict):
            price = item.get("price")
            prices = {k: _money(v) for k, v in price.items()} if isinstance(price, dict) else None
            out.append(CatalogGpu(_str(item.get("id")), _str(item.get("name")), prices))
    return out


def catalog_price(body: Any, gpu_type: str, cloud: str) -> float | None:
    """USD/hour of ``gpu_type`` in ``cloud`` from ``GET /catalog/gpus``, None if absent."""
    for gpu in catalog_gpus(body):
        if gpu_type in (gpu.id, gpu.name) and gpu.prices is not None:
            value = gpu.prices.get(cloud.lower(), 0.0)
            return value if value > 0 else None
    return None


# --- field readers: a wrong type reads as missing -------------------------------------------
def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _money(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) and number >= 0 else 0.0


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    if isinstance(value, list):  # the GraphQL shape: [{"key": ..., "value": ...}]
        out = {}
        for item in value:
            if isinstance(item, dict):
                key, val = item.get("key"), item.get("value")
                if isinstance(key, str) and isinstance(val, str):
                    out[key] = val
        return out
    return {}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    # Runpod has also written "2026-08-18 12:00:00.000 +0000 UTC".
    text = text.removesuffix(" UTC").replace("Z", "+00:00")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            when = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f %z")
        except ValueError:
            return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
