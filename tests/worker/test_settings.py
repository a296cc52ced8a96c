"""Settings from the environment: defaults, lists, the processor mapping, one-line errors."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.settings import describe_variables, load_settings

BASE = {"WORKER_ID": "gpu-reactor-abc", "DATABASE_URL": "postgresql://u:pw@db:5432/app"}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert (s.heartbeat_interval_sec, s.poll_interval_sec, s.task_timeout_sec) == (15, 5, 3600)
    assert (s.worker_grace_sec, s.worker_connect_retries) == (30, 10)
    assert s.worker_task_types == [] and s.worker_processors == {} and s.worker_command is None
    assert s.dsn == BASE["DATABASE_URL"]
    assert "pw" not in repr(s)


def test_lists_and_mapping_are_parsed() -> None:
    s = load_settings(
        {
            **BASE,
            "WORKER_TASK_TYPES": " video, render ,",
            "WORKER_PROCESSORS": "video=command, render=pkg.mod:run,*=echo",
            "WORKER_COMMAND": "  python3 /app/run.py --headless  ",
        }
    )
    assert s.worker_task_types == ["video", "render"]
    assert load_settings({**BASE, "WORKER_TASK_TYPES": "wan_*,flux_?"}).worker_task_types == [
        "wan_*",
        "flux_?",
    ]
    assert s.worker_processors == {"video": "command", "render": "pkg.mod:run", "*": "echo"}
    assert s.worker_command == "python3 /app/run.py --headless"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"WORKER_ID": ""}, "WORKER_ID: String should have at least 1 character"),
        ({"POLL_INTERVAL_SEC": "-1"}, "POLL_INTERVAL_SEC: Input should be greater than 0"),
        ({"TASK_TIMEOUT_SEC": "soon"}, "TASK_TIMEOUT_SEC: Input should be a valid number"),
        ({"WORKER_CONNECT_RETRIES": "0"}, "WORKER_CONNECT_RETRIES: Input should be greater than"),
        (
            {"WORKER_PROCESSORS": "a=echo,a=sleep"},
            "WORKER_PROCESSORS: task type 'a' is mapped twice",
        ),
        (
            {"WORKER_PROCESSORS": "a=bogus"},
            "WORKER_PROCESSORS: processor 'bogus' for 'a' is neither",
        ),
        ({"WORKER_PROCESSORS": "*=command"}, "WORKER_COMMAND must be set"),
        (
            {"WORKER_TASK_TYPES": "wan_*,flux x"},
            "WORKER_TASK_TYPES: task type pattern 'flux x' contains whitespace",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: Input should be 'auto', 'json' or 'text'"),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable(
    extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **extra})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_dsn_never_appears_in_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "DATABASE_URL": "mysql://u:hunter22@db/app"})
    assert "hunter22" not in str(caught.value)


def test_every_variable_is_documented() -> None:
    text = describe_variables()
    for name in (
        "WORKER_ID",
        "DATABASE_URL",
        "HEARTBEAT_INTERVAL_SEC",
        "POLL_INTERVAL_SEC",
        "WORKER_TASK_TYPES",
        "WORKER_PROCESSORS",
        "WORKER_COMMAND",
        "TASK_TIMEOUT_SEC",
        "WORKER_GRACE_SEC",
        "WORKER_CONNECT_RETRIES",
        "WORKER_RESULT_RETRY_SEC",
    ):
        assert f"  {name}  (" in text
    assert "None\n" not in text  # every field has a description
