"""One root for every error gpu-reactor raises on purpose; each carries its data."""

from __future__ import annotations

# A ProviderError's message is cut to this many characters (runpod_http cuts what a
# provider answered much shorter; this is the last guard for any provider).
MESSAGE_LIMIT = 1000


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one printable line: control and other unprintable characters (NUL,
    CR, LF, escape sequences, bidi overrides) become spaces, runs of whitespace one
    space, and the result is cut to ``limit`` characters ('...' marks a cut)."""
    text = text[: limit * 4]  # bounds the work; collapsing whitespace only shortens it
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: max(limit - 3, 0)].rstrip() + "..."


class ReactorError(Exception):
    """Base of all gpu-reactor errors. ``str(err)`` is one line fit for a person: the
    message is made one printable line (``one_line``) whatever went into it (a driver's
    multi-line error, a file name with a newline, a provider's body)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class ConfigError(ReactorError):
    """A setting or the environment is wrong; start-up stops with this message."""


class DatabaseError(ReactorError):
    """The database cannot be reached or is not in the expected state."""


class SchemaError(DatabaseError):
    """The schema is missing or older than this release: run ``gpu-reactor migrate``."""


class ProviderError(ReactorError):
    """A provider call failed. ``status`` is the HTTP status when there was one.

    The message is made one printable line (``one_line``) whatever a provider answered:
    it reaches terminals, logs and ``workers.error_reason`` (text, where NUL is refused).
    """

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class TransientProviderError(ProviderError):
    """Worth retrying later (5xx, timeouts, connection resets)."""


class CapacityError(ProviderError):
    """No capacity for this GPU type / data center right now; try another candidate."""


class RateLimited(ProviderError):
    """429: wait ``retry_after`` seconds before the next call."""

    def __init__(self, message: str, *, retry_after: float, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """Retrying the same call cannot help (422, 401, 403, 409)."""


class RequestRejected(PermanentProviderError):
    """The provider refused the request itself, not for lack of capacity: a Runpod 400
    whose detail is not the no-capacity text (a cross-field rule such as a network volume
    outside the pod's data center, an unknown GPU id), or a pod placed where it cannot
    work. It fails the same way every time until a setting changes. ``retry_after``: the
    seconds until the provider will try a candidate again (0: unknown)."""

    def __init__(self, message: str, *, retry_after: float = 0.0, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Unauthorized(PermanentProviderError):
    """401: the API key is missing, malformed, expired or invalid."""


class Forbidden(PermanentProviderError):
    """403: the API key is valid but has no access to ``resource``."""

    def __init__(self, message: str, *, resource: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.resource = resource


class InsufficientBalance(PermanentProviderError):
    """402: the account cannot pay for more pods; stop creating and tell the operator."""


class NotFound(ProviderError):
    """404: the pod does not exist (for a terminate, that is success)."""
