"""How long an HTTP API asks to be left alone: ``Retry-After`` and ``RateLimit`` headers.

Pure parsing; the transport (runpod_http) decides what to do with the seconds.
"""

from __future__ import annotations

import email.utils
import time


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date), None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def parse_ratelimit(value: str | None) -> float | None:
    """Seconds until the tightest exhausted window resets, None when none is exhausted.

    Understands ``"minute";r=0;t=12, "hour";r=2800;t=1812`` (r = remaining, t = seconds to
    reset) and the older draft form ``limit=60, remaining=0, reset=12``.
    """
    if not value:
        return None
    waits: list[float] = []
    flat: dict[str, str] = {}
    for item in value.split(","):
        parts = [p.strip() for p in item.split(";")]
        if len(parts) == 1:
            key, _, val = parts[0].partition("=")
            flat[key.strip().lower()] = val.strip()
            continue
        params = dict(_pair(p) for p in parts[1:])
        wait = _exhausted(params.get("r"), params.get("t"))
        if wait is not None:
            waits.append(wait)
    wait = _exhausted(flat.get("remaining"), flat.get("reset"))
    if wait is not None:
        waits.append(wait)
    return max(waits) if waits else None


def _pair(part: str) -> tuple[str, str]:
    key, _, val = part.partition("=")
    return key.strip().lower(), val.strip()


def _exhausted(remaining: str | None, reset: str | None) -> float | None:
    try:
        if remaining is None or float(remaining) > 0:
            return None
        return max(0.0, float(reset)) if reset is not None else 1.0
    except ValueError:
        return None
