"""Every setting of the worker, from the environment only (a pod has no ``.env``).

``load_settings()`` turns any invalid value into one ``ConfigError`` line that names the
variable, which ``main`` prints before exiting with code 2. ``gpu-worker --help`` lists
the variables with their descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.errors import ConfigError
from worker.globs import validate_glob

BUILTIN_SPECS = frozenset({"echo", "sleep", "command"})
WILDCARD = "*"
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_TASK_TYPE = re.compile(r"^[^\s,=]+$")


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_processors(value: Any) -> Any:
    """``"video=command,render=pkg.mod:fn,*=command"`` -> {task type: processor spec}."""
    if not isinstance(value, str):
        return value
    mapping: dict[str, str] = {}
    for item in _split_list(value):
        task_type, sep, spec = (part.strip() for part in item.partition("="))
        if not sep or not task_type or not spec:
            raise ValueError(f"expected 'task_type=processor', got {item!r}")
        if task_type in mapping:
            raise ValueError(f"task type {task_type!r} is mapped twice")
        mapping[task_type] = spec
    return mapping


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, validate_default=True)

    # --- identity and database -------------------------------------------------------
    worker_id: str = Field(
        alias="WORKER_ID",
        min_length=1,
        max_length=200,
        pattern=r"^[^\s]+$",
        description="this worker's id: its row in workers and its pod's name",
    )
    database_url: SecretStr = Field(
        alias="DATABASE_URL",
        description="postgresql:// DSN, normally a login in the least-privilege gpu_worker "
        "role; a session (not transaction-pooled) connection, LISTEN needs one",
    )
    worker_token: SecretStr | None = Field(
        None,
        alias="WORKER_TOKEN",
        min_length=16,
        max_length=200,
        description="this pod's own credential, set by the reactor at spawn: a worker row "
        "created with one accepts heartbeats, claims and results only from "
        "sessions holding it",
    )
    worker_connect_retries: int = Field(
        10,
        ge=1,
        le=1000,
        alias="WORKER_CONNECT_RETRIES",
        description="Attempts to reach the database at start-up (backoff 0.5 s doubling, "
        "capped by WORKER_RECONNECT_MAX_SEC) before exiting with code 1.",
    )
    worker_reconnect_max_sec: float = Field(
        10,
        gt=0,
        le=300,
        alias="WORKER_RECONNECT_MAX_SEC",
        description="Cap in seconds of the backoff between reconnects after a lost connection.",
    )
    worker_db_timeout_sec: float = Field(
        30,
        gt=0,
        le=600,
        alias="WORKER_DB_TIMEOUT_SEC",
        description="Seconds one connect or one call may take before the connection is "
        "considered lost (guards against half-open TCP).",
    )

    # --- timing ----------------------------------------------------------------------
    heartbeat_interval_sec: float = Field(
        15,
        gt=0,
        le=3600,
        alias="HEARTBEAT_INTERVAL_SEC",
        description="Seconds between heartbeats; keep it well under the reactor's "
        "GPU_IDLE_TIMEOUT_SEC.",
    )
    poll_interval_sec: float = Field(
        5,
        gt=0,
        le=3600,
        alias="POLL_INTERVAL_SEC",
        description="Seconds an idle worker waits for a NOTIFY before claiming anyway: "
        "what a lost notification costs at most.",
    )
    task_timeout_sec: float = Field(
        3600,
        gt=0,
        alias="TASK_TIMEOUT_SEC",
        description="Seconds one task may run; past it the task is failed (requeued while "
        "attempts remain). Task params cannot override it.",
    )
    worker_grace_sec: float = Field(
        30,
        ge=0,
        alias="WORKER_GRACE_SEC",
        description="After SIGTERM, seconds the task in hand may take to finish before it "
        "is failed back to the queue.",
    )
    worker_result_retry_sec: float = Field(
        600,
        ge=0,
        alias="WORKER_RESULT_RETRY_SEC",
        description="Seconds a task's outcome is retried while the database is unreachable "
        "(bounded by the grace period once stopping). The calls are fenced, so "
        "a retry never overwrites a task the reactor took back.",
    )

    # --- what to run -----------------------------------------------------------------
    worker_task_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        alias="WORKER_TASK_TYPES",
        description="Comma-separated task types this worker claims, names or globs (* any "
        "run of characters, ? one; wan_* claims wan_2_1); empty = every type.",
    )
    worker_processors: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        alias="WORKER_PROCESSORS",
        description="Comma-separated task_type=processor: echo, sleep, command (runs "
        "WORKER_COMMAND) or module:function. '*=...' covers every other type. "
        "Entry points in group gpu_reactor.processors and the built-ins echo and "
        "sleep apply where this says nothing.",
    )
    worker_command: str | None = Field(
        None,
        alias="WORKER_COMMAND",
        description="Command line of the 'command' processor: gets the task's params as "
        "JSON on stdin, must print the result as JSON on stdout, exit 0.",
    )

    # --- logs ------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", alias="LOG_LEVEL", description="Log level."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", alias="LOG_FORMAT", description="auto: text on a terminal, JSON otherwise."
    )

    @field_validator("worker_task_types", mode="before")
    @classmethod
    def _task_types(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("worker_task_types")
    @classmethod
    def _task_type_globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = validate_glob(pattern)
            if problem is not None:
                raise ValueError(f"task type pattern {pattern[:80]!r} {problem}")
        return value

    @field_validator("worker_processors", mode="before")
    @classmethod
    def _processors(cls, value: Any) -> Any:
        return parse_processors(value)

    @field_validator("worker_processors")
    @classmethod
    def _processor_specs(cls, value: dict[str, str]) -> dict[str, str]:
        for task_type, spec in value.items():
            if task_type != WILDCARD and not _TASK_TYPE.match(task_type):
                raise ValueError(f"invalid task type {task_type!r}")
            if spec not in BUILTIN_SPECS and not _CALLABLE.match(spec):
                raise ValueError(
                    f"processor {spec!r} for {task_type!r} is neither echo, "
                    "sleep, command nor module:function"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("worker_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()

    @model_validator(mode="after")
    def _command_needed(self) -> Settings:
        if "command" in self.worker_processors.values() and not self.worker_command:
            raise ValueError("WORKER_COMMAND must be set: WORKER_PROCESSORS uses 'command'")
        return self

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def token(self) -> str | None:
        return self.worker_token.get_secret_value() if self.worker_token else None


def _describe(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    name = loc[0].upper() if loc else ""
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        field = next((f for f in Settings.model_fields.values() if f.alias == name), None)
        hint = f": {field.description}" if field is not None and field.description else ""
        return f"{name} is required but not set{hint}"
    if not name:
        return message
    value = error.get("input")
    shown = f" (got {str(value)[:80]!r})"
    if name == "DATABASE_URL" or not isinstance(value, str | int | float) or repr(value) in message:
        shown = ""
    return f"{name}: {message}{shown}"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment (or ``env``); one ConfigError line when invalid."""
    try:
        if env is None:
            return Settings()  # type: ignore[call-arg]
        return Settings.model_validate({k.upper(): v for k, v in env.items()})
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None


def describe_variables() -> str:
    """The environment variables the worker reads, for ``gpu-worker --help``."""
    lines = []
    for field in Settings.model_fields.values():
        default = (
            "required"
            if field.is_required()
            else f"default {field.get_default(call_default_factory=True)!r}"
        )
        lines.append(f"  {field.alias}  ({default})\n      {field.description}")
    return "\n".join(lines)
