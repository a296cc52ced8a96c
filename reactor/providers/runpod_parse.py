"""Lenient readers of Runpod REST v2 bodies.

The v2 spec changed almost weekly in 2026: unknown fields are ignored, optional fields
may be missing or null, and a field of an unexpected type is treated as missing. Only a
body that cannot be what it claims (not an object, no ``pods`` list, a pod without an
``id``) is malformed: that raises ``MalformedBody`` and the caller turns it into a
TransientProviderError. Nothing here raises KeyError or TypeError on any JSON value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reactor.providers.base import Pod


class MalformedBody(ValueError):
    """The body does not have the documented shape."""


@dataclass(frozen=True)
class PodPage:
    pods: list[Pod]
    next_cursor: str | None  # None: this was the last (or only) page


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


def parse_page(body: Any) -> PodPage:
    """``{"pods": [...]}`` or the paged ``{"pods": [...], "pagination": {...}}``."""
    if not isinstance(body, dict):
        raise MalformedBody(f"the pod list is {type(body).__name__}, not an object")
    raw_pods = body.get("pods")
    if raw_pods is None and "pods" not in body:
        raise MalformedBody("the pod list has no 'pods'")
    if raw_pods is None:
        raw_pods = []
    if not isinstance(raw_pods, list):
        raise MalformedBody(f"'pods' is {type(raw_pods).__name__}, not a list")
    pods = [parse_pod(item) for item in raw_pods]
    return PodPage(pods, _next_cursor(body.get("pagination")))


def _next_cursor(pagination: Any) -> str | None:
    if pagination is None:
        return None
    if not isinstance(pagination, dict):
        raise MalformedBody("'pagination' is not an object")
    cursor = pagination.get("nextCursor")
    more = pagination.get("hasNextPage")
    if more is None:  # tolerate a missing flag: a cursor alone means more pages
        more = isinstance(cursor, str) and bool(cursor)
    if more is not True and more is not False:
        raise MalformedBody("'hasNextPage' is not a boolean")
    if not more:
        return None
    if not isinstance(cursor, str) or not cursor:
        raise MalformedBody("'hasNextPage' is true but there is no 'nextCursor'")
    return cursor


def catalog_price(body: Any, gpu_type: str, cloud: str) -> float | None:
    """USD/hour of ``gpu_type`` in ``cloud`` from ``GET /catalog/gpus``, None if absent."""
    gpus = body.get("gpus") if isinstance(body, dict) else None
    if not isinstance(gpus, list):
        raise MalformedBody("the GPU catalog has no 'gpus' list")
    for item in gpus:
        if not isinstance(item, dict) or gpu_type not in (item.get("id"), item.get("name")):
            continue
        price = item.get("price")
        if isinstance(price, dict):
            value = _money(price.get(cloud.lower()))
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
