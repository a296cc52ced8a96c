"""Every setting of the reactor, from the environment and ``.env``.

The seed system's names are kept (MIN_ACTIVE_GPUS, GPU_IDLE_TIMEOUT_SEC, ...). An invalid
value stops start-up with one line naming the setting (``load_settings``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import SettingsConfigDict, SettingsError

from reactor.dsn import dsn_password, dsn_problem
from reactor.errors import ConfigError
from reactor.settings_demand import DemandSettings
from reactor.settings_errors import (
    INVALID_DSN,
    describe_settings_error,
    describe_validation_error,
)
from reactor.settings_runpod import RunpodSettings
from reactor.settings_scaledown import ScaleDownSettings
from reactor.settings_worker import WorkerSettings
from reactor.worker_contract import contract_env, contract_problem

_FLEET = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Upper bounds: no sane timeout, price or budget is infinite, and every value here must
# also fit a timedelta, an int32 column (gpu_reactor.settings) and math.floor.
DAY = 86_400.0
WEEK = 7 * DAY
MAX_SPAWN_BACKOFF_SEC = 600.0  # the executor's and the provider's backoff cap
MAX_USD_PER_HOUR = 1_000_000.0
MAX_GPU_PRICE_USD = 10_000.0
MIN_GPU_PRICE_USD = 0.001  # a lower non-zero price would make any budget "afford" ~infinity


class Settings(WorkerSettings, DemandSettings, ScaleDownSettings, RunpodSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # --- database -------------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr(""),
        alias="DATABASE_URL",
        description="DSN of the database holding tasks and workers (reactor's role). "
        "Use a direct or session-mode connection: LISTEN needs one.",
    )
    worker_database_url: SecretStr | None = Field(
        None,
        alias="WORKER_DATABASE_URL",
        description="DSN handed to GPU pods, meant for the least-privilege gpu_worker role. "
        "Defaults to DATABASE_URL for the local provider only.",
    )

    # --- fleet size -----------------------------------------------------------------
    min_active_gpus: int = Field(
        0,
        ge=0,
        le=1000,
        alias="MIN_ACTIVE_GPUS",
        description="Workers kept alive even with an empty queue.",
    )
    max_active_gpus: int = Field(
        2,
        ge=0,
        le=10000,
        alias="MAX_ACTIVE_GPUS",
        description="Hard cap on live workers (spawning+active+terminating).",
    )
    tasks_per_gpu_threshold: int = Field(
        3,
        ge=1,
        le=100000,
        alias="TASKS_PER_GPU_THRESHOLD",
        description="Queued + In Progress tasks one worker is expected to handle.",
    )
    max_hourly_spend_usd: float | None = Field(
        None,
        gt=0,
        le=MAX_USD_PER_HOUR,
        allow_inf_nan=False,
        alias="MAX_HOURLY_SPEND_USD",
        description="USD/hour cap on the summed cost of live workers; unset means no cap.",
    )
    gpu_hourly_price_usd: float = Field(
        0.0,
        ge=0,
        le=MAX_GPU_PRICE_USD,
        allow_inf_nan=False,
        alias="GPU_HOURLY_PRICE_USD",
        description="Expected USD/hour of one worker, used for the budget before a pod "
        "reports its real cost. 0 = ask the provider's catalog.",
    )

    # --- timing (seconds) ------------------------------------------------------------
    gpu_idle_timeout_sec: float = Field(
        120,
        gt=0,
        le=DAY,
        allow_inf_nan=False,
        alias="GPU_IDLE_TIMEOUT_SEC",
        description="Heartbeat timeout: an active worker silent this long is dead. Pods are "
        "told to beat every min(15 s, a quarter of it) unless WORKER_EXTRA_ENV sets "
        "HEARTBEAT_INTERVAL_SEC, which must then be at most a quarter of it.",
    )
    task_stuck_timeout_sec: float = Field(
        4200,
        gt=0,
        le=WEEK,
        allow_inf_nan=False,
        alias="TASK_STUCK_TIMEOUT_SEC",
        description="A task In Progress this long is requeued and its worker drained. A "
        "TASK_TIMEOUT_SEC in WORKER_EXTRA_ENV must be at most 90% of it; without one, pods "
        "get 90% of it when the workers' default (3600) would not fit.",
    )
    spawning_timeout_sec: float = Field(
        900,
        gt=0,
        le=DAY,
        allow_inf_nan=False,
        alias="SPAWNING_TIMEOUT_SEC",
        description="A pod that has not sent its first heartbeat by then is terminated.",
    )
    task_retry_delay_sec: float = Field(
        10,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        alias="TASK_RETRY_DELAY_SEC",
        description="A task its processor failed waits this long before its next attempt, "
        "doubling with each attempt (at most an hour); 0 = requeue at once.",
    )
    graceful_shutdown_timeout_sec: float = Field(
        600,
        gt=0,
        le=WEEK,
        allow_inf_nan=False,
        alias="GRACEFUL_SHUTDOWN_TIMEOUT_SEC",
        description="Drain limit: a draining worker's pod is terminated after this long.",
    )
    scale_down_idle_sec: float = Field(
        300,
        ge=0,
        le=WEEK,
        allow_inf_nan=False,
        alias="SCALE_DOWN_IDLE_SEC",
        description="An active worker idle this long (no task) may be drained if above MIN.",
    )
    sweep_interval_sec: float = Field(
        30,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        alias="SWEEP_INTERVAL_SEC",
        description="Full reconcile including the provider's pod list, at least this often.",
    )
    coalesce_window_sec: float = Field(
        0.05,
        ge=0,
        le=10,
        allow_inf_nan=False,
        alias="COALESCE_WINDOW_SEC",
        description="After a reconcile, events within this window are folded into the next one.",
    )
    listener_check_interval_sec: float = Field(
        5,
        gt=0,
        le=60,
        allow_inf_nan=False,
        alias="LISTENER_CHECK_INTERVAL_SEC",
        description="How often the listener connection is probed with a NOTIFY round-trip.",
    )
    reactor_shutdown_grace_sec: float = Field(
        30,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        alias="REACTOR_SHUTDOWN_GRACE_SEC",
        description="On SIGTERM, how long the reactor may finish what it is doing before it "
        "is cancelled; the cancel then has 10 s to unwind, or the process exits 1.",
    )
    spawn_failure_backoff_sec: float = Field(
        30,
        gt=0,
        le=MAX_SPAWN_BACKOFF_SEC,
        allow_inf_nan=False,
        alias="SPAWN_FAILURE_BACKOFF_SEC",
        description="After a create fails for lack of capacity, wait this long (doubling, "
        "capped at 10 minutes) before trying that GPU type again.",
    )

    # --- identity and provider -----------------------------------------------------------
    reactor_fleet: str = Field(
        "gpu-reactor",
        alias="REACTOR_FLEET",
        description="Fleet name: pod name prefix and GPU_REACTOR_FLEET env marker. "
        "Pods without both marks are never touched.",
    )
    reactor_provider: Literal["runpod", "local"] = Field(
        "runpod", alias="REACTOR_PROVIDER", description="Where pods come from."
    )
    worker_extra_env: dict[str, str] = Field(
        default_factory=dict,
        alias="WORKER_EXTRA_ENV",
        description="JSON object of extra environment variables for every worker "
        "(HEARTBEAT_INTERVAL_SEC and TASK_TIMEOUT_SEC must fit GPU_IDLE_TIMEOUT_SEC and "
        "TASK_STUCK_TIMEOUT_SEC).",
    )

    local_worker_command: str = Field(
        "",
        alias="LOCAL_WORKER_COMMAND",
        description="Command line the local provider runs per worker; default: this "
        "Python's 'python -m worker'.",
    )

    # --- operator surface ----------------------------------------------------------------
    reactor_http_host: str = Field(
        "127.0.0.1",
        alias="REACTOR_HTTP_HOST",
        description="Address of /metrics, /status, /healthz.",
    )
    reactor_http_port: int = Field(
        9108,
        ge=0,
        le=65535,
        alias="REACTOR_HTTP_PORT",
        description="Port of the HTTP server; 0 disables it.",
    )
    reactor_http_token: SecretStr | None = Field(
        None,
        alias="REACTOR_HTTP_TOKEN",
        description="When set, /status requires 'Authorization: Bearer <token>'.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", alias="LOG_LEVEL", description="Log level."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", alias="LOG_FORMAT", description="auto: text on a terminal, JSON otherwise."
    )

    # --- warm buffer ---------------------------------------------------------------------
    machines_to_keep_idle: int = Field(
        0,
        ge=0,
        le=10000,
        alias="MACHINES_TO_KEEP_IDLE",
        description="Idle workers kept beyond the busy ones, ready for the next task "
        "without a pod start-up (the seed orchestrator's name and meaning); within "
        "MAX_ACTIVE_GPUS and MAX_HOURLY_SPEND_USD.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("reactor_fleet")
    @classmethod
    def _fleet(cls, value: str) -> str:
        if not _FLEET.match(value):
            raise ValueError("must be 2-40 characters of a-z, 0-9 and '-', starting with a letter")
        return value

    @field_validator("database_url", "worker_database_url")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the value: it holds a password.
        if value is not None and value.get_secret_value():
            problem = dsn_problem(value.get_secret_value())
            if problem:
                raise PydanticCustomError(
                    INVALID_DSN,
                    "{problem} (expected postgresql://user:password@host:port/database)",
                    {"problem": problem},
                )
        return value

    @field_validator("gpu_hourly_price_usd")
    @classmethod
    def _price(cls, value: float) -> float:
        if 0 < value < MIN_GPU_PRICE_USD:
            raise ValueError(f"must be 0 (ask the provider) or at least {MIN_GPU_PRICE_USD}")
        return value

    @field_validator("worker_extra_env")
    @classmethod
    def _extra_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name[:40]!r} is not an environment variable name "
                    "(letters, digits and '_', not starting with a digit)"
                )
            if "\x00" in text:
                raise ValueError(f"the value of {name} contains a NUL character")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.min_active_gpus > self.max_active_gpus:
            raise ValueError(
                f"MIN_ACTIVE_GPUS ({self.min_active_gpus}) is above MAX_ACTIVE_GPUS "
                f"({self.max_active_gpus})"
            )
        if not self.runpod_gpu_types and self.runpod_instance_type:
            self.runpod_gpu_types = [self.runpod_instance_type]
        if (
            self.max_hourly_spend_usd is not None
            and self.gpu_hourly_price_usd
            and self.max_hourly_spend_usd < self.gpu_hourly_price_usd
        ):
            raise ValueError(
                f"MAX_HOURLY_SPEND_USD ({self.max_hourly_spend_usd}) is below the price of one "
                f"worker (GPU_HOURLY_PRICE_USD={self.gpu_hourly_price_usd})"
            )
        problem = contract_problem(
            self.worker_extra_env,
            idle_timeout_sec=self.gpu_idle_timeout_sec,
            stuck_timeout_sec=self.task_stuck_timeout_sec,
        )
        if problem:
            raise ValueError(problem)
        return self

    # --- helpers ---------------------------------------------------------------------
    def dsn(self) -> str:
        value = self.database_url.get_secret_value()
        if not value:
            raise ConfigError(
                "DATABASE_URL is not set: point it at the database holding the tasks table"
            )
        return value

    def worker_env(self) -> dict[str, str]:
        """What every pod's environment carries besides its identity: WORKER_EXTRA_ENV,
        and the worker settings that must fit the reactor's where it does not set them
        (reactor/worker_contract.py)."""
        contract = contract_env(
            self.worker_extra_env,
            idle_timeout_sec=self.gpu_idle_timeout_sec,
            stuck_timeout_sec=self.task_stuck_timeout_sec,
        )
        fleet = {"WORKER_TASK_TYPES": ",".join(self.task_types)} if self.task_types else {}
        return {**contract, **fleet, **self.worker_extra_env}

    def worker_dsn(self) -> str:
        if self.worker_database_url is not None and self.worker_database_url.get_secret_value():
            return self.worker_database_url.get_secret_value()
        if self.reactor_provider == "local":
            return self.dsn()
        raise ConfigError(
            "WORKER_DATABASE_URL is not set: GPU pods need a DSN (use the gpu_worker role)"
        )

    def secrets(self) -> list[str]:
        """Every secret value in force, for log and output scrubbing: the DSNs and their
        passwords, the API key, the HTTP token and the WORKER_EXTRA_ENV values (tokens
        for the pods, echoed back by a provider that quotes a pod's env)."""
        values = [
            self.database_url,
            self.worker_database_url,
            self.runpod_api_key,
            self.reactor_http_token,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        for dsn in list(found):
            password = dsn_password(dsn)
            if password:
                found.append(password)
        found += [v for k, v in self.worker_extra_env.items() if _may_be_secret(k, v)]
        return found

    def redacted(self) -> dict[str, Any]:
        """Settings in force with secrets replaced, keyed by environment name."""
        out: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            key = field.alias or name.upper()
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif name == "worker_extra_env":
                value = {k: "**********" for k in value}
            out[key] = value
        return out


_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


def _may_be_secret(name: str, value: str) -> bool:
    """Whether a WORKER_EXTRA_ENV value is worth scrubbing. Scrubbing replaces every
    occurrence of the text in logs and in /status JSON, so a short value ("1", "cuda")
    or a JSON literal ("true", "3600") would mangle unrelated output, JSON included;
    a value whose name says it is a secret (*KEY*, *SECRET*, *TOKEN*, *PASSWORD*, such
    as SUPABASE_SERVICE_ROLE_KEY) is scrubbed from 4 characters on, whatever it looks
    like."""
    if value in ("true", "false", "null"):
        return False
    if _SECRET_NAME.search(name):
        return len(value) >= 4
    if len(value) < 8:
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, Settings.model_fields)) from None
    except SettingsError as exc:
        raise ConfigError(describe_settings_error(exc, Settings.model_fields)) from None
