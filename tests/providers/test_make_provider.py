"""make_provider picks the provider REACTOR_PROVIDER names and refuses what cannot work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reactor.errors import ConfigError
from reactor.providers import make_provider
from reactor.providers.local import LocalProvider
from reactor.providers.runpod import RunpodProvider
from reactor.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_local(tmp_path: Path) -> None:
    provider = make_provider(settings(REACTOR_PROVIDER="local"), workdir=tmp_path)
    assert isinstance(provider, LocalProvider) and provider.workdir == tmp_path
    await provider.close()


async def test_runpod() -> None:
    seen: list[tuple[str, str]] = []
    provider = make_provider(
        settings(REACTOR_PROVIDER="runpod", RUNPOD_API_KEY="rpa_x", RUNPOD_GPU_TYPES="NVIDIA L4"),
        on_request=lambda op, outcome: seen.append((op, outcome)),
    )
    assert isinstance(provider, RunpodProvider)
    await provider.close()


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"RUNPOD_API_KEY": None, "RUNPOD_GPU_TYPES": "NVIDIA L4"}, "RUNPOD_API_KEY"),
        ({"RUNPOD_API_KEY": " ", "RUNPOD_GPU_TYPES": "NVIDIA L4"}, "RUNPOD_API_KEY"),
        (
            {"RUNPOD_API_KEY": "rpa_x", "RUNPOD_GPU_TYPES": "", "RUNPOD_INSTANCE_TYPE": None},
            "RUNPOD_GPU_TYPES",
        ),
    ],
)
def test_runpod_needs_a_key_and_gpu_types(values: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_provider(settings(REACTOR_PROVIDER="runpod", **values))
    message = str(caught.value)
    assert names in message and "\n" not in message
