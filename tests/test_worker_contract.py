"""The heartbeat contract: the worker settings that must fit the reactor's
(reactor/worker_contract.py), what pods are given, and what stops start-up."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.errors import ConfigError
from reactor.settings import DAY, WEEK, Settings, load_settings
from reactor.worker_contract import (
    WORKER_HEARTBEAT_DEFAULT_SEC,
    WORKER_TASK_TIMEOUT_DEFAULT_SEC,
    contract_env,
    contract_problem,
)
from worker.settings import Settings as WorkerSettings
from worker.settings import load_settings as load_worker_settings


def test_the_reactor_knows_the_workers_defaults() -> None:
    fields = WorkerSettings.model_fields
    assert fields["heartbeat_interval_sec"].default == WORKER_HEARTBEAT_DEFAULT_SEC
    assert fields["task_timeout_sec"].default == WORKER_TASK_TIMEOUT_DEFAULT_SEC


@pytest.mark.parametrize(
    ("idle", "stuck", "extra", "given_"),
    [
        (120, 4200, {}, {"HEARTBEAT_INTERVAL_SEC": "15"}),  # the defaults fit as they are
        (6, 4200, {}, {"HEARTBEAT_INTERVAL_SEC": "1.5"}),
        (2, 4200, {}, {"HEARTBEAT_INTERVAL_SEC": "0.5"}),
        (60, 60, {}, {"HEARTBEAT_INTERVAL_SEC": "15", "TASK_TIMEOUT_SEC": "54"}),
        (60, 3700, {}, {"HEARTBEAT_INTERVAL_SEC": "15", "TASK_TIMEOUT_SEC": "3330"}),
        (60, 4000, {}, {"HEARTBEAT_INTERVAL_SEC": "15"}),  # 3600 <= 3600
        (6, 60, {"HEARTBEAT_INTERVAL_SEC": "1", "TASK_TIMEOUT_SEC": "30"}, {}),
        (6, 4200, {"heartbeat_interval_sec": "1"}, {}),  # the worker reads it either way
    ],
)
def test_what_pods_are_given_where_worker_extra_env_says_nothing(
    idle: float, stuck: float, extra: dict[str, str], given_: dict[str, str]
) -> None:
    assert contract_env(extra, idle_timeout_sec=idle, stuck_timeout_sec=stuck) == given_


@pytest.mark.parametrize(
    ("idle", "stuck", "extra", "named"),
    [
        (60, 4200, {"HEARTBEAT_INTERVAL_SEC": "30"}, "GPU_IDLE_TIMEOUT_SEC=60"),
        (6, 4200, {"HEARTBEAT_INTERVAL_SEC": "15"}, "GPU_IDLE_TIMEOUT_SEC=6"),
        (6, 4200, {"heartbeat_interval_sec": "2"}, "GPU_IDLE_TIMEOUT_SEC=6"),
        (60, 4200, {"HEARTBEAT_INTERVAL_SEC": "soon"}, "GPU_IDLE_TIMEOUT_SEC=60"),
        (60, 4200, {"HEARTBEAT_INTERVAL_SEC": "0"}, "GPU_IDLE_TIMEOUT_SEC=60"),
        (60, 4200, {"TASK_TIMEOUT_SEC": "4000"}, "TASK_STUCK_TIMEOUT_SEC=4200"),
        (60, 4200, {"TASK_TIMEOUT_SEC": "inf"}, "TASK_STUCK_TIMEOUT_SEC=4200"),
    ],
)
def test_a_worker_extra_env_value_that_does_not_fit_is_named_with_its_reactor_setting(
    idle: float, stuck: float, extra: dict[str, str], named: str
) -> None:
    problem = contract_problem(extra, idle_timeout_sec=idle, stuck_timeout_sec=stuck)
    assert problem is not None and named in problem
    assert problem.startswith(f"WORKER_EXTRA_ENV sets {next(iter(extra)).upper()}=")


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"HEARTBEAT_INTERVAL_SEC": "15"},  # exactly a quarter of 60
        {"TASK_TIMEOUT_SEC": "3780"},  # exactly 90 % of 4200
        {"HF_TOKEN": "hf_x"},
    ],
)
def test_values_that_fit_pass(extra: dict[str, str]) -> None:
    assert contract_problem(extra, idle_timeout_sec=60, stuck_timeout_sec=4200) is None


def values(**overrides: Any) -> dict[str, Any]:
    return {"REACTOR_PROVIDER": "local", **overrides}


def test_a_heartbeat_that_does_not_fit_stops_start_up_in_one_line_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            _env_file=None,
            **values(GPU_IDLE_TIMEOUT_SEC=60, WORKER_EXTRA_ENV={"HEARTBEAT_INTERVAL_SEC": "30"}),
        )
    message = str(caught.value)
    assert message.startswith("invalid settings: WORKER_EXTRA_ENV sets HEARTBEAT_INTERVAL_SEC")
    assert "GPU_IDLE_TIMEOUT_SEC=60" in message and "\n" not in message


def test_a_task_timeout_that_does_not_fit_stops_start_up_in_one_line_naming_both() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            _env_file=None,
            **values(TASK_STUCK_TIMEOUT_SEC=600, WORKER_EXTRA_ENV={"TASK_TIMEOUT_SEC": "3600"}),
        )
    message = str(caught.value)
    assert "WORKER_EXTRA_ENV sets TASK_TIMEOUT_SEC" in message
    assert "TASK_STUCK_TIMEOUT_SEC=600" in message


def test_the_pod_env_is_worker_extra_env_with_the_contract_values() -> None:
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **values(GPU_IDLE_TIMEOUT_SEC=6, WORKER_EXTRA_ENV={"HF_TOKEN": "hf_secret_value"}),
    )
    assert s.worker_env() == {"HF_TOKEN": "hf_secret_value", "HEARTBEAT_INTERVAL_SEC": "1.5"}


@settings(max_examples=200, deadline=None)
@given(
    idle=st.floats(min_value=1e-3, max_value=DAY),
    stuck=st.floats(min_value=1e-3, max_value=WEEK),
)
def test_what_pods_are_given_the_worker_accepts_and_fits(idle: float, stuck: float) -> None:
    given_ = contract_env({}, idle_timeout_sec=idle, stuck_timeout_sec=stuck)
    worker = load_worker_settings(
        {"WORKER_ID": "w-1", "DATABASE_URL": "postgresql://w@db/x", **given_}
    )
    assert worker.heartbeat_interval_sec <= idle / 4
    assert worker.task_timeout_sec <= stuck * 0.9
    assert contract_problem(given_, idle_timeout_sec=idle, stuck_timeout_sec=stuck) is None
