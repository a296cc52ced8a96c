"""Runpod answers an operation cannot use, as errors of the ProviderError family: 401 is
a rejected key, 403 a key without access to the named resource, 4xx permanent, 5xx
transient; a body that does not parse is transient."""

from __future__ import annotations

import logging

from reactor.errors import (
    Forbidden,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
    Unauthorized,
)
from reactor.providers.runpod_http import Reply, RunpodHttp
from reactor.providers.runpod_parse import MalformedBody

log = logging.getLogger("reactor.providers.runpod")


def unexpected(http: RunpodHttp, reply: Reply, operation: str, resource: str) -> ProviderError:
    """The error of an answer the operation cannot use; ``resource`` names what was
    asked for, for a 403."""
    detail = reply.detail() or f"HTTP {reply.status}"
    if reply.status == 401:
        return http.error(
            Unauthorized,
            f"API key rejected: Runpod answered {operation} with 401 ({detail}); "
            "RUNPOD_API_KEY is missing, malformed, expired or invalid",
            reply,
        )
    if reply.status == 403:
        return Forbidden(
            http.scrub(
                f"the API key is valid but has no access to {resource}: Runpod answered "
                f"403 ({detail}); grant the key that permission"
            ),
            resource=resource,
            status=reply.status,
            request_id=reply.request_id,
        )
    hint = " (check RUNPOD_API_URL)" if reply.status == 404 else ""
    cls = PermanentProviderError if reply.status < 500 else TransientProviderError
    return http.error(cls, f"Runpod {operation} answered {reply.status}{hint}: {detail}", reply)


def malformed(http: RunpodHttp, reply: Reply, operation: str, exc: MalformedBody) -> ProviderError:
    log.warning(
        "runpod_malformed_answer",
        extra={"operation": operation, "error": str(exc), "request_id": reply.request_id},
    )
    return http.error(
        TransientProviderError, f"Runpod {operation} answer is malformed: {exc}", reply
    )
