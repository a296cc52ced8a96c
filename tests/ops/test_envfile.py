""".env.example lists every setting, matches its generator, and loads."""

from __future__ import annotations

import re
from pathlib import Path

from reactor.envfile import render
from reactor.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_in_env_example() -> None:
    text = EXAMPLE.read_text()
    names = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    expected = {field.alias or name.upper() for name, field in Settings.model_fields.items()}
    assert expected - names == set(), "missing from .env.example"
    assert names - expected == set(), "in .env.example but not a setting"


def test_env_example_is_current() -> None:
    assert EXAMPLE.read_text() == render(), (
        ".env.example is out of date: python -m reactor.envfile > .env.example"
    )


def test_env_example_loads_as_valid_settings() -> None:
    settings = Settings(_env_file=str(EXAMPLE))  # type: ignore[call-arg]
    assert settings.dsn().startswith("postgresql://")
    assert settings.runpod_gpu_types and settings.worker_extra_env == {}
