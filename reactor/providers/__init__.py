"""GPU providers: where pods come from (REACTOR_PROVIDER = runpod | local)."""

from __future__ import annotations

from pathlib import Path

from reactor.errors import ConfigError
from reactor.providers.base import Pod, PodSpec, Provider
from reactor.providers.runpod_http import OnRequest
from reactor.settings import Settings


def make_provider(
    settings: Settings, *, on_request: OnRequest | None = None, workdir: str | Path | None = None
) -> Provider:
    """The provider REACTOR_PROVIDER names; ConfigError (one line) when it cannot work.

    :param on_request: ``(operation, outcome)`` per HTTP request (runpod only).
    :param workdir: where local workers write their logs (local only; default a temp dir).
    """
    if settings.reactor_provider == "local":
        from reactor.providers.local import LocalProvider

        return LocalProvider(settings=settings, workdir=workdir)
    key = settings.runpod_api_key
    if key is None or not key.get_secret_value().strip():
        raise ConfigError(
            "RUNPOD_API_KEY is not set: the runpod provider needs an API key "
            "(or set REACTOR_PROVIDER=local)"
        )
    if not settings.runpod_gpu_types and not settings.pools_file:  # else each pool has its own
        raise ConfigError(
            "RUNPOD_GPU_TYPES is not set: list the GPU type ids to create, in "
            "order of preference (e.g. 'NVIDIA GeForce RTX 4090')"
        )
    from reactor.providers.runpod import RunpodProvider

    return RunpodProvider(settings=settings, on_request=on_request)


__all__ = ["Pod", "PodSpec", "Provider", "make_provider"]
