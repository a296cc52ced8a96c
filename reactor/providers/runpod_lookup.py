"""After a create whose answer was lost: find the pod by name before anything else.

Runpod v2 has no idempotency key. A create that timed out, or answered 5xx or a body that
cannot be read, may still have made a pod that bills, and Runpod's list may not show a
pod made a moment ago. So the name is looked up a few times over about ten seconds; only
then is the create called uncertain, and the worker's row is left to the sweep (which
attaches the pod when the list shows it, or retires the row).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from reactor.errors import ProviderError, TransientProviderError
from reactor.providers.base import Pod

log = logging.getLogger("reactor.providers.runpod")

# The lookups run after these delays: at 0, 1, 4 and 10 s.
LOOKUP_DELAYS_SEC = (0.0, 1.0, 3.0, 6.0)

Sleep = Callable[[float], Awaitable[None]]
Find = Callable[[str], Awaitable[Pod | None]]


async def find_lost_pod(
    name: str, lost: TransientProviderError, *, find: Find, sleep: Sleep
) -> Pod:
    """The pod called ``name`` that the lost create made; TransientProviderError (the
    create is uncertain) when no lookup finds it."""
    log.warning(
        "runpod_create_uncertain",
        extra={"pod_name": name, "error": str(lost), "request_id": lost.request_id},
    )
    answered, failure = 0, None
    for delay in LOOKUP_DELAYS_SEC:
        if delay:
            await sleep(delay)
        try:
            pod = await find(name)
        except ProviderError as exc:
            failure = exc
            continue
        answered += 1
        if pod is not None:
            log.info(
                "runpod_create_recovered",
                extra={"pod_name": name, "pod_id": pod.id, "lookups": answered},
            )
            return pod
    if not answered:
        raise TransientProviderError(
            f"create of {name} got no usable answer ({lost}) and the lookup by name "
            f"failed too ({failure})",
            status=lost.status,
            request_id=lost.request_id,
        ) from lost
    raise TransientProviderError(
        f"create of {name} got no usable answer ({lost}); no pod of that name exists "
        f"({answered} lookups over {sum(LOOKUP_DELAYS_SEC):g}s)",
        status=lost.status,
        request_id=lost.request_id,
    ) from lost
