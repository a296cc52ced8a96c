"""POOLS_FILE: the GPU pools, read from TOML and checked before anything uses them.

    [pools.big]
    task_types = ["wan_*", "hunyuan_video"]
    runpod_gpu_types = ["NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"]
    max_active_gpus = 4
    max_hourly_spend_usd = 12.0

    [pools.small]
    task_types = ["*"]          # everything else, and what "big" cannot take
    runpod_gpu_types = ["NVIDIA GeForce RTX 4090"]
    worker_extra_env = { MODEL = "wan-1.3b" }

A pool's keys are the reactor's setting names in lower case, with TOML types; what a pool
leaves out comes from the environment (``worker_extra_env`` is merged over the
environment's WORKER_EXTRA_ENV, so shared secrets stay out of the file). A file that does
not validate is refused with one line naming the file, the pool and the key.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from reactor.domain.globs import is_glob, validate_glob
from reactor.domain.pools import Pool, Pools
from reactor.errors import ConfigError
from reactor.logs import register_secrets
from reactor.settings import Settings

# The settings a pool may set: what its workers are, run and cost, and its own limits.
# Every other setting is the fleet's (the database, the HTTP server, the sweep, ...).
POOL_KEYS = (
    "task_types",
    "stuck_task_exempt_types",
    "min_active_gpus",
    "max_active_gpus",
    "tasks_per_gpu_threshold",
    "machines_to_keep_idle",
    "max_hourly_spend_usd",
    "gpu_hourly_price_usd",
    "scale_down_idle_sec",
    "spawning_timeout_sec",
    "gpu_idle_timeout_sec",
    "task_stuck_timeout_sec",
    "graceful_shutdown_timeout_sec",
    "spawn_failure_backoff_sec",
    "runpod_gpu_types",
    "runpod_container_image",
    "runpod_container_args",
    "runpod_container_disk_size_gb",
    "runpod_cloud",
    "runpod_data_centers",
    "runpod_network_volume_id",
    "runpod_volume_mount_path",
    "worker_extra_env",
    "demand_sql",
)
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_TWICE = re.compile(r"Cannot declare \('pools', '([^']*)'\) twice \(at line (\d+)")

Kind = Literal["integer", "number", "string", "list of strings", "table of strings"]


def _kind(name: str) -> Kind:
    """What TOML type a key takes, from the setting's own type."""
    annotation: Any = Settings.model_fields[name].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is list:
        return "list of strings"
    if origin is dict:
        return "table of strings"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    return "string"  # str and Literal[...] of strings


def _type_problem(kind: Kind, value: object) -> str | None:
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "list of strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "table of strings": isinstance(value, dict)
        and all(isinstance(v, str) for v in value.values()),
    }[kind]
    article = "an" if kind == "integer" else "a"
    return None if ok else f"must be {article} {kind}, not {_toml_type(value)}"


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if all(isinstance(v, str) for v in value) else "a list of non-strings"
    if isinstance(value, dict):
        return "a table" if not value else "a table of non-strings"
    return f"a {type(value).__name__}"  # a date, a time, a datetime


def load_pools(settings: Settings) -> Pools:
    """The pools POOLS_FILE defines, or the one pool of the environment without it; their
    worker_extra_env secrets are registered for scrubbing. ConfigError, in one line, when
    the file does not validate."""
    if not settings.pools_file:
        return Pools.single(settings)
    pools = read_pools(Path(settings.pools_file), settings)
    register_secrets(pool_secrets(pools))  # whoever reads the file scrubs its secrets
    return pools


def read_pools(path: Path, settings: Settings) -> Pools:
    where = f"POOLS_FILE {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is no TOML error
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        twice = _TWICE.search(str(exc))
        if twice:
            raise ConfigError(
                f"{where}: pool {twice.group(1)!r} is defined twice (line {twice.group(2)})"
            ) from None
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_pools(data, settings, str(path))


def parse_pools(data: dict[str, Any], settings: Settings, source: str) -> Pools:
    """The pools of a parsed POOLS_FILE (``source`` names it in errors)."""
    where = f"POOLS_FILE {source}"
    extra = sorted(set(data) - {"pools"})
    if extra:
        raise ConfigError(f"{where}: unknown top-level key {extra[0]!r} (only [pools.NAME])")
    tables = data.get("pools")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: defines no pool (add a [pools.NAME] table)")
    if settings.demand_sql:
        raise ConfigError(
            f"{where}: DEMAND_SQL counts one fleet's demand and cannot be routed to pools; "
            "unset it and give a pool its own demand_sql"
        )
    pools = tuple(_pool(name, table, settings, where) for name, table in tables.items())
    floor = sum(p.settings.min_active_gpus for p in pools)
    if floor > settings.max_active_gpus:
        raise ConfigError(
            f"{where}: min_active_gpus of all pools add up to {floor}, above the fleet's "
            f"MAX_ACTIVE_GPUS ({settings.max_active_gpus})"
        )
    return Pools(pools, settings, source=source)


def _pool(name: str, table: object, settings: Settings, where: str) -> Pool:
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: pool {name[:40]!r}: the name must be 1-40 characters of a-z, 0-9, "
            "'_' and '-', starting with a letter"
        )
    here = f"{where}: pool {name!r}"
    if not isinstance(table, dict):
        raise ConfigError(f"{here}: must be a table ([pools.{name}])")
    fields = Settings.model_fields
    overrides: dict[str, Any] = {}
    for key, value in table.items():
        if key not in POOL_KEYS:
            if key in fields:
                raise ConfigError(f"{here}: {key} is fleet-wide: set it in the environment")
            raise ConfigError(f"{here}: unknown key {key!r}")
        problem = _value_problem(key, value)
        if problem:
            raise ConfigError(f"{here}: {key} {problem}")
        if key == "worker_extra_env":
            value = {**settings.worker_extra_env, **value}
        overrides[fields[key].alias or key.upper()] = value
    lo = table.get("min_active_gpus", settings.min_active_gpus)
    hi = table.get("max_active_gpus", settings.max_active_gpus)
    if 0 <= hi < lo:  # a negative one is refused below, by the setting's own range
        raise ConfigError(f"{here}: min_active_gpus ({lo}) is above max_active_gpus ({hi})")
    values = {(f.alias or n.upper()): getattr(settings, n) for n, f in fields.items()}
    values |= overrides
    try:
        own = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{here}: {_describe(exc)}") from None
    if own.reactor_provider == "runpod" and not own.runpod_gpu_types:
        if "runpod_gpu_types" in table:
            raise ConfigError(
                f"{here}: runpod_gpu_types is empty: name the GPU type ids this pool "
                "creates, in order of preference (or leave it out for RUNPOD_GPU_TYPES)"
            )
        raise ConfigError(
            f"{here}: runpod_gpu_types is empty and so is RUNPOD_GPU_TYPES: name the GPU "
            "type ids this pool creates, in order of preference"
        )
    pool = Pool(name, own)
    _claims_its_own(pool, table, here)
    return pool


def _claims_its_own(pool: Pool, table: dict[str, Any], here: str) -> None:
    """A pool's pods must claim its task types: routing counts on it."""
    claimed = pool.settings.worker_extra_env.get("WORKER_TASK_TYPES")
    if claimed is None or tuple(p for p in claimed.split(",") if p) == pool.patterns:
        return
    own = "WORKER_TASK_TYPES" in table.get("worker_extra_env", {})
    raise ConfigError(
        f"{here}: {'worker_extra_env' if own else 'WORKER_EXTRA_ENV'} sets WORKER_TASK_TYPES="
        f"{claimed[:80]!r}, not its task_types ({','.join(pool.patterns)[:80]!r}): its pods "
        "would claim other tasks than those routed to it; leave WORKER_TASK_TYPES out (pods "
        "get their pool's task_types)"
    )


def _value_problem(key: str, value: object) -> str | None:
    problem = _type_problem(_kind(key), value)
    if problem is None and key == "task_types":
        return _patterns_problem(typing.cast(list[str], value))
    if problem is None and key == "stuck_task_exempt_types":
        return _like_problem(typing.cast(list[str], value))
    return problem


def _patterns_problem(value: list[str]) -> str | None:
    if not value:
        return "is empty: list task type names or globs ('*' runs every type)"
    for pattern in value:
        problem = validate_glob(pattern)
        if problem:
            return f"entry {pattern[:40]!r} {problem}"
    return None


def _like_problem(value: list[str]) -> str | None:
    """stuck_task_exempt_types: LIKE patterns (none: no type is exempt)."""
    for pattern in value:
        problem = validate_glob(pattern)
        if problem is None and is_glob(pattern):
            problem = (
                "has a glob's '*' or '?': these are SQL LIKE patterns ('%' any run of "
                "characters, '_' one), as in STUCK_TASK_EXEMPT_TYPES"
            )
        if problem:
            return f"entry {pattern[:40]!r} {problem}"
    return None


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    by_alias = {(f.alias or n.upper()): n for n, f in Settings.model_fields.items()}
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    for alias, name in by_alias.items():  # the file's names for the file's keys
        if name in POOL_KEYS:
            message = re.sub(rf"\b{alias}\b", name, message)
    if loc and str(loc[0]) in by_alias:
        return f"{by_alias[str(loc[0])]}: {message}"
    return message


def pool_secrets(pools: Pools) -> list[str]:
    """The secrets of every pool's settings (its worker_extra_env may add some)."""
    found: list[str] = []
    for pool in pools:
        found += pool.settings.secrets()
    return found
