"""POOLS_FILE: what a valid file makes, and one line for each way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor.errors import ConfigError
from reactor.pools_file import POOL_KEYS, load_pools, read_pools
from reactor.settings import Settings
from tests.domain.builders import make_settings

GOOD = """
[pools.big]
task_types = ["wan_*", "hunyuan_video"]
runpod_gpu_types = ["NVIDIA H100 80GB HBM3"]
max_active_gpus = 4
max_hourly_spend_usd = 12.5
worker_extra_env = { MODEL = "wan-14b" }

[pools.small]
task_types = ["*"]
runpod_gpu_types = ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"]
min_active_gpus = 1
scale_down_idle_sec = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pools.toml"
    path.write_text(text)
    return path


def env(**overrides: object) -> Settings:
    return make_settings(
        MAX_ACTIVE_GPUS=10, WORKER_EXTRA_ENV={"HF_TOKEN": "hf_secret_1234"}, **overrides
    )


def test_a_valid_file_makes_its_pools_in_file_order(tmp_path: Path) -> None:
    pools = read_pools(write(tmp_path, GOOD), env(SCALE_DOWN_IDLE_SEC=300))
    assert pools.names == ("big", "small") and pools.routed
    big, small = pools.pools
    assert big.patterns == ("wan_*", "hunyuan_video")
    assert big.settings.max_hourly_spend_usd == 12.5 and big.settings.max_active_gpus == 4
    # worker_extra_env is merged over the environment's: its secrets stay out of the file.
    assert big.settings.worker_extra_env == {"HF_TOKEN": "hf_secret_1234", "MODEL": "wan-14b"}
    assert big.settings.worker_env()["WORKER_TASK_TYPES"] == "wan_*,hunyuan_video"
    # What a pool leaves out comes from the environment.
    assert (big.settings.scale_down_idle_sec, small.settings.scale_down_idle_sec) == (300, 60)
    assert small.settings.runpod_gpu_types == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A5000"]
    assert pools.settings.max_active_gpus == 10
    assert "hf_secret_1234" in big.settings.secrets()


def test_without_pools_file_there_is_one_pool_made_from_the_environment() -> None:
    settings = env(TASK_TYPES="a,b")
    pools = load_pools(settings)
    assert pools.names == ("default",) and not pools.routed
    assert pools.first.settings is settings and pools.first.patterns == ("a", "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pools.a]\nmax_gpus = 2\n", "pool 'a': unknown key 'max_gpus'"),
        (
            '[pools.a]\nmax_active_gpus = "2"\n',
            "pool 'a': max_active_gpus must be an integer, not a string",
        ),
        (
            "[pools.a]\nmax_active_gpus = 2.5\n",
            "pool 'a': max_active_gpus must be an integer, not a number",
        ),
        (
            '[pools.a]\ntask_types = "wan_*"\n',
            "pool 'a': task_types must be a list of strings, not a string",
        ),
        (
            "[pools.a]\nworker_extra_env = { A = 1 }\n",
            "pool 'a': worker_extra_env must be a table of strings, not a table of non-strings",
        ),
        (
            "[pools.a]\nmin_active_gpus = 3\nmax_active_gpus = 2\n",
            "pool 'a': min_active_gpus (3) is above max_active_gpus (2)",
        ),
        ("[pools.a]\nmax_active_gpus = -1\n", "pool 'a': max_active_gpus:"),
        ('[pools.a]\nrunpod_cloud = "MOON"\n', "pool 'a': runpod_cloud:"),
        (
            '[pools.a]\ndatabase_url = "postgresql://x"\n',
            "pool 'a': database_url is fleet-wide: set it in the environment",
        ),
        ('[pools.a]\ntask_types = [""]\n', "pool 'a': task_types entry '' is empty"),
        ("[pools.a]\ntask_types = []\n", "pool 'a': task_types is empty: list task type"),
        (
            "[pools.a]\ngpu_hourly_price_usd = 2.0\nmax_hourly_spend_usd = 1.0\n",
            "pool 'a': max_hourly_spend_usd (1.0) is below the price of one worker "
            "(gpu_hourly_price_usd=2.0)",
        ),
        ("[pools.a]\nx = 1\n[pools.a]\ny = 2\n", "pool 'a' is defined twice (line 3)"),
        ("[pools.Big]\n", "pool 'Big': the name must be"),
        ("[pools]\n", "defines no pool"),
        ("[other]\n", "unknown top-level key 'other'"),
        ("[pools.a\n", "not valid TOML"),
        (
            "[pools.a]\nmin_active_gpus = 6\n[pools.b]\nmin_active_gpus = 6\n",
            "min_active_gpus of all pools add up to 12, above the fleet's MAX_ACTIVE_GPUS (10)",
        ),
    ],
)
def test_an_invalid_file_is_refused_with_one_line_naming_file_pool_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_pools(path, env())
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"POOLS_FILE {path}: ")
    assert message in line


def test_a_missing_file_and_demand_sql_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_pools(env(POOLS_FILE=str(tmp_path / "nope.toml")))
    path = write(tmp_path, "[pools.a]\n")
    with pytest.raises(ConfigError, match="DEMAND_SQL counts one fleet's demand"):
        read_pools(path, env(DEMAND_SQL="SELECT 1"))


def test_every_pool_key_is_a_setting_and_no_fleet_wide_one_is() -> None:
    fields = Settings.model_fields
    assert set(POOL_KEYS) <= set(fields)
    for fleet_wide in (
        "database_url",
        "reactor_fleet",
        "sweep_interval_sec",
        "pools_file",
        "reactor_provider",
        "runpod_api_key",
    ):
        assert fleet_wide not in POOL_KEYS


def test_a_runpod_pool_needs_gpu_types_of_its_own_or_the_environments(tmp_path: Path) -> None:
    path = write(tmp_path, '[pools.a]\ntask_types = ["x"]\n')
    with pytest.raises(ConfigError, match="pool 'a': runpod_gpu_types is empty and so is"):
        read_pools(path, make_settings(RUNPOD_GPU_TYPES=""))
    pools = read_pools(path, make_settings(RUNPOD_GPU_TYPES="", REACTOR_PROVIDER="local"))
    assert pools.names == ("a",)


def test_stuck_task_exempt_types_are_like_patterns_and_may_be_empty(tmp_path: Path) -> None:
    """A pool's stuck_task_exempt_types are STUCK_TASK_EXEMPT_TYPES: SQL LIKE patterns,
    unlike its task_types (globs). An empty list exempts nothing (under headless-wan2gp,
    whose default is %_orchestrator); a glob's '*' or '?', which LIKE takes literally and
    so would exempt nothing, is refused."""
    headless = env(WORKER_PROTOCOL="headless-wan2gp")
    path = write(tmp_path, "[pools.a]\nstuck_task_exempt_types = []\n")
    assert read_pools(path, headless).first.settings.exempt_task_types() == ()
    path = write(tmp_path, '[pools.a]\nstuck_task_exempt_types = ["%_orchestrator"]\n')
    assert read_pools(path, env()).first.settings.exempt_task_types() == ("%_orchestrator",)
    path = write(tmp_path, '[pools.a]\nstuck_task_exempt_types = ["*_orchestrator"]\n')
    with pytest.raises(ConfigError) as caught:
        read_pools(path, headless)
    assert str(caught.value) == (
        f"POOLS_FILE {path}: pool 'a': stuck_task_exempt_types entry '*_orchestrator' has "
        "a glob's '*' or '?': these are SQL LIKE patterns ('%' any run of characters, '_' "
        "one), as in STUCK_TASK_EXEMPT_TYPES"
    )


@pytest.mark.parametrize(
    ("environment", "table", "source"),
    [
        ({"WORKER_TASK_TYPES": "video"}, "", "WORKER_EXTRA_ENV"),
        ({}, 'worker_extra_env = { WORKER_TASK_TYPES = "video,caption" }\n', "worker_extra_env"),
    ],
)
def test_a_worker_task_types_that_is_not_the_pools_own_is_refused(
    tmp_path: Path, environment: dict[str, str], table: str, source: str
) -> None:
    """A pool's pods claim its task_types (WORKER_TASK_TYPES). One set by WORKER_EXTRA_ENV
    (a fleet's from before pools) or by the pool's worker_extra_env would have every
    pool's pods claim those instead: tasks routed to a pool that its pods never claim."""
    text = '[pools.big]\ntask_types = ["video"]\n\n[pools.small]\ntask_types = ["caption"]\n'
    path = write(tmp_path, text + table)
    with pytest.raises(ConfigError) as caught:
        read_pools(path, make_settings(MAX_ACTIVE_GPUS=10, WORKER_EXTRA_ENV=environment))
    line = str(caught.value)
    assert line.startswith(f"POOLS_FILE {path}: pool 'small': {source} sets WORKER_TASK_TYPES")
    assert "its task_types" in line and "\n" not in line
    # The same patterns as the pool's own are no conflict.
    same = '[pools.big]\ntask_types = ["video"]\n'
    video = make_settings(WORKER_EXTRA_ENV={"WORKER_TASK_TYPES": "video"})
    assert read_pools(write(tmp_path, same), video).names == ("big",)


def test_an_empty_runpod_gpu_types_in_the_file_is_named_as_the_files(tmp_path: Path) -> None:
    """The pool's own `runpod_gpu_types = []` is what is empty, not RUNPOD_GPU_TYPES."""
    path = write(tmp_path, '[pools.a]\ntask_types = ["x"]\nrunpod_gpu_types = []\n')
    with pytest.raises(ConfigError) as caught:
        read_pools(path, make_settings(RUNPOD_GPU_TYPES="NVIDIA GeForce RTX 4090"))
    assert str(caught.value) == (
        f"POOLS_FILE {path}: pool 'a': runpod_gpu_types is empty: name the GPU type ids "
        "this pool creates, in order of preference (or leave it out for RUNPOD_GPU_TYPES)"
    )


def test_a_toml_date_where_a_number_belongs_is_named_with_its_article(tmp_path: Path) -> None:
    path = write(tmp_path, "[pools.a]\nmax_active_gpus = 1979-05-27\n")
    with pytest.raises(ConfigError, match="max_active_gpus must be an integer, not a date$"):
        read_pools(path, env())


def test_a_file_saved_with_a_utf8_byte_order_mark_reads_as_without(tmp_path: Path) -> None:
    """Editors on Windows save UTF-8 with a BOM; tomllib alone refuses it at line 1."""
    path = tmp_path / "pools.toml"
    path.write_bytes(b'\xef\xbb\xbf[pools.a]\ntask_types = ["x"]\n')
    assert read_pools(path, env()).names == ("a",)
