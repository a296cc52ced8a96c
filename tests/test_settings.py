"""Settings limits that need no process: bounds, DSN checks, secrets (the out-of-range
values as real processes: tests/faults/test_bad_settings.py)."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import annotated_types
import pytest

from reactor.dsn import dsn_problem
from reactor.errors import ConfigError
from reactor.settings import (
    MAX_USD_PER_HOUR,
    MIN_GPU_PRICE_USD,
    WEEK,
    Settings,
    load_settings,
)

INT32_MAX = 2**31 - 1


def _numeric_fields() -> list[str]:
    return [
        name
        for name, f in Settings.model_fields.items()
        if f.annotation in (int, float) or str(f.annotation) == "float | None"
    ]


@pytest.mark.parametrize("name", _numeric_fields())
def test_every_number_has_an_upper_bound_and_floats_are_finite(name: str) -> None:
    field = Settings.model_fields[name]
    assert any(isinstance(m, annotated_types.Le) for m in field.metadata), name
    if field.annotation is not int:
        # pydantic puts allow_inf_nan=False in the metadata as its own constraint object.
        assert any(getattr(m, "allow_inf_nan", None) is False for m in field.metadata), name


def test_the_largest_values_fit_what_consumes_them() -> None:
    assert timedelta(seconds=WEEK) + timedelta(seconds=WEEK)  # policy deadlines
    assert WEEK <= INT32_MAX  # gpu_reactor.settings columns are integer
    assert math.floor(MAX_USD_PER_HOUR / MIN_GPU_PRICE_USD) < 2**53  # policy._spawn_room


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment and a working directory without .env."""
    monkeypatch.chdir(tmp_path)
    for name, field in Settings.model_fields.items():
        monkeypatch.delenv(field.alias or name.upper(), raising=False)
    return monkeypatch


GOOD_DSNS = [
    "postgresql://u:pw@db.example.com:5432/app",
    "postgres://u@localhost/app",
    "postgresql://u:pw@h1:5432,h2:5433/app",
    "postgresql://u:pw@[::1]:5432/app",
    "postgresql://u:pw@[::1]/app",
    "postgresql://u:p%40ss@h/app?sslmode=require&application_name=x",
    "postgresql:///app?host=/var/run/postgresql",
    "postgresql://u@h:/app",  # an empty port means the default, as in asyncpg
]
BAD_DSNS = [
    ("postgresql://u:s3cret@127.0.0.1:notaport/x", "port"),
    ("postgresql://u:s3cret@127.0.0.1:0/x", "port"),
    ("postgresql://u:s3cret@127.0.0.1:65536/x", "port"),
    ("postgresql://u:s3cret@h:\uff15\uff14\uff13\uff12/x", "port"),  # full-width digits
    ("postgresql://u:s3cret@h/x?port=abc", "port"),
    ("postgresql://u:s3cret@[::1/x", "readable"),
    ("postgresql://u:s3cret@[::1]:x/x", "port"),
    ("postgresql://u:s3cret@,h/x", "empty host"),
    ("postgresql://u:s3@cret@h/x", "'@'"),
    ("postgresql://u:s3cret@h/x?sslmode", "query"),
    ("not a url", "postgresql://"),
    ("mysql://u:s3cret@h/x", "postgresql://"),
    ("s3cret", "postgresql://"),
]


@pytest.mark.parametrize("dsn", GOOD_DSNS)
def test_a_usable_dsn_passes(dsn: str) -> None:
    assert dsn_problem(dsn) is None


@pytest.mark.parametrize(("dsn", "why"), BAD_DSNS)
@pytest.mark.parametrize("name", ["DATABASE_URL", "WORKER_DATABASE_URL"])
def test_a_bad_dsn_is_one_line_naming_it_without_the_password(
    env: pytest.MonkeyPatch, name: str, dsn: str, why: str
) -> None:
    env.setenv(name, dsn)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name} is not a valid DSN: ") and why in message
    assert "s3cret" not in message and "cret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("{", "not valid JSON"),
        ('{"a": 1', "not valid JSON"),
        ("[1, 2]", "dictionary"),
        ('{"A B": "x"}', "environment variable name"),
        ('{"A": "x\\u0000"}', "NUL"),
    ],
)
def test_a_bad_worker_extra_env_names_the_setting(
    env: pytest.MonkeyPatch, value: str, why: str
) -> None:
    env.setenv("WORKER_EXTRA_ENV", value)
    with pytest.raises(ConfigError, match=f"^invalid setting WORKER_EXTRA_ENV: .*{why}"):
        load_settings()


def test_a_worker_extra_env_in_dot_env_that_is_not_json_names_the_setting(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("WORKER_EXTRA_ENV={\n")
    with pytest.raises(ConfigError, match="^invalid setting WORKER_EXTRA_ENV: not valid JSON$"):
        load_settings()


@pytest.mark.parametrize("price", ["1e-300", "5e-324", "0.0009"])
def test_a_vanishing_gpu_price_is_refused(env: pytest.MonkeyPatch, price: str) -> None:
    env.setenv("GPU_HOURLY_PRICE_USD", price)
    with pytest.raises(ConfigError, match="^invalid setting GPU_HOURLY_PRICE_USD: "):
        load_settings()


def test_worker_extra_env_values_are_secrets_unless_scrubbing_them_would_mangle_output(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv(
        "WORKER_EXTRA_ENV",
        '{"HF_TOKEN": "hf_0123456789abcdef", "S3": "s3://k:v@b/p", '
        '"FLAG": "1", "ON": "true", "DEVICE": "cuda", '
        '"LIMIT": "360000000", "RATIO": "12345.678"}',
    )
    found = load_settings().secrets()
    assert "hf_0123456789abcdef" in found and "s3://k:v@b/p" in found
    for value in ("1", "true", "cuda", "360000000", "12345.678"):
        assert value not in found


def test_worker_extra_env_values_named_as_secrets_are_scrubbed_however_they_look(
    env: pytest.MonkeyPatch,
) -> None:
    # A Headless-Wan2GP pod's Supabase service key, and secrets short or numeric enough
    # to pass for plain values were it not for their names (*KEY*, *SECRET*, *TOKEN*,
    # *PASSWORD*).
    env.setenv(
        "WORKER_EXTRA_ENV",
        '{"SUPABASE_SERVICE_ROLE_KEY": "eyJhbGciOi.sr", "DB_PASSWORD": "123456", '
        '"api_token": "abcd", "MY_SECRET": "s3cr", "SUPABASE_URL": "https://x.supabase.co", '
        '"KEY_COUNT": "12", "SECRET_ON": "true"}',
    )
    found = load_settings().secrets()
    for value in ("eyJhbGciOi.sr", "123456", "abcd", "s3cr", "https://x.supabase.co"):
        assert value in found
    for value in ("12", "true"):  # too short, or a JSON literal: would mangle output
        assert value not in found
    assert set(load_settings().redacted()["WORKER_EXTRA_ENV"].values()) == {"**********"}


def test_max_active_gpus_reaches_a_provider_accounts_fleet(env: pytest.MonkeyPatch) -> None:
    s = Settings(DATABASE_URL="postgresql://u@h/x", MAX_ACTIVE_GPUS=10_000)
    assert s.max_active_gpus == 10_000
    with pytest.raises(ValueError, match="MAX_ACTIVE_GPUS"):
        Settings(DATABASE_URL="postgresql://u@h/x", MAX_ACTIVE_GPUS=10_001)


@pytest.mark.parametrize(
    ("given", "idle"),
    [
        ({}, 300),
        ({"SCALE_DOWN_IDLE_SEC": "60"}, 60),
        ({"GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC": "30"}, 30),  # the seed's name, its meaning
        ({"GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC": "30", "SCALE_DOWN_IDLE_SEC": "30"}, 30),
    ],
)
def test_the_seeds_overcapacity_idle_timeout_is_scale_down_idle_sec(
    env: pytest.MonkeyPatch, given: dict[str, str], idle: float
) -> None:
    for name, value in given.items():
        env.setenv(name, value)
    assert load_settings().scale_down_idle_sec == idle


def test_two_different_idle_times_under_the_two_names_are_refused(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("GPU_OVERCAPACITY_IDLE_TIMEOUT_SEC", "30")
    env.setenv("SCALE_DOWN_IDLE_SEC", "300")
    with pytest.raises(ConfigError, match="one idle time under two names"):
        load_settings()


def test_the_scale_down_policy_is_fixed_or_break_even(env: pytest.MonkeyPatch) -> None:
    assert load_settings().scale_down_policy == "fixed"
    env.setenv("SCALE_DOWN_POLICY", "break-even")
    assert load_settings().scale_down_policy == "break-even"
    env.setenv("SCALE_DOWN_POLICY", "sometimes")
    with pytest.raises(ConfigError, match="^invalid setting SCALE_DOWN_POLICY"):
        load_settings()
