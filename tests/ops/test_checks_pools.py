"""`gpu-reactor check` on the GPU pools: the file, each pool's GPU types in Runpod's catalog
(the fake Runpod over real HTTP), budgets, routing and the fleet cap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from reactor.ops.checks_pools import judge_pools, shadowed_by
from reactor.pools_file import parse_pools
from reactor.providers.runpod_parse import catalog_gpus
from tests.domain.builders import make_settings
from tests.fakes import run_fake_runpod
from tests.fakes.runpod_v2_pods import DEFAULT_DATA_CENTERS, DEFAULT_GPU_TYPES, catalog
from tests.ops.conftest import Cli
from tests.ops.test_cli_ops import runpod_env

TWO_POOLS = """
[pools.big]
task_types = ["wan_*"]
runpod_gpu_types = ["NVIDIA H100 80GB HBM3", "NVIDIA H200 141GB"]
max_active_gpus = 1

[pools.small]
task_types = ["*"]
runpod_gpu_types = ["NVIDIA GeForce RTX 4090"]
max_active_gpus = 1
"""
EXAMPLE = Path(__file__).resolve().parents[2] / "ops" / "pools.example.toml"
CATALOG = catalog_gpus(catalog(DEFAULT_GPU_TYPES, list(DEFAULT_DATA_CENTERS), set(), False))


def verdicts(out: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in orjson.loads(out)}


async def test_an_unknown_gpu_type_fails_its_pool_by_name(
    cli: Cli, db_dsn: str, worker_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(TWO_POOLS)
    async with run_fake_runpod() as runpod:
        env = runpod_env(runpod, db_dsn, worker_dsn, POOLS_FILE=path)
        checked = await asyncio.to_thread(cli, "check", "--json", **env)
        assert checked.code == 1, checked.text
        got = verdicts(checked.out)
        assert got["pools-file"]["verdict"] == "PASS"
        assert "2 pools (big, small)" in got["pools-file"]["detail"]
        big = got["pool:big"]
        assert big["verdict"] == "FAIL"
        assert "'NVIDIA H200 141GB' is not in Runpod's GPU catalog" in big["detail"]
        assert "H100" not in big["detail"]  # the type the catalog has is not a problem
        small = got["pool:small"]
        assert small["verdict"] == "PASS", small
        assert "NVIDIA GeForce RTX 4090 $0.69/h in SECURE" in small["detail"]
        assert got["pools-routing"]["verdict"] == "PASS"
        assert got["pools-fleet-cap"]["verdict"] == "PASS"  # 1 + 1 within MAX_ACTIVE_GPUS=2
        assert len(runpod.calls("GET", "/catalog/gpus")) == 1  # read once for every pool

        text = await asyncio.to_thread(cli, "check", **env)
        assert "verdict: FAIL (pool:big)" in text.out, text.out

        path.write_text(TWO_POOLS.replace(', "NVIDIA H200 141GB"', ""))
        fixed = await asyncio.to_thread(cli, "check", **env)
        assert fixed.code == 0, fixed.out
        words = " ".join(fixed.out.split())
        assert "PASS pool:big NVIDIA H100 80GB HBM3 $2.99/h in SECURE" in words


async def test_an_unreadable_catalog_is_one_failure_and_the_pools_are_skipped(
    cli: Cli, db_dsn: str, worker_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(TWO_POOLS)
    async with run_fake_runpod() as runpod:
        runpod.faults.deny(method="GET", path="/catalog/gpus")
        env = runpod_env(runpod, db_dsn, worker_dsn, POOLS_FILE=path)
        got = verdicts((await asyncio.to_thread(cli, "check", "--json", **env)).out)
    assert got["provider"]["verdict"] == "PASS"
    assert got["gpu-catalog"]["verdict"] == "FAIL"
    assert "no access to the GPU catalog" in got["gpu-catalog"]["detail"]
    assert got["pool:big"]["verdict"] == got["pool:small"]["verdict"] == "SKIP"


async def test_the_example_pools_file_passes_against_the_catalog(
    cli: Cli, db_dsn: str, worker_dsn: str
) -> None:
    extra = {"NVIDIA A100 80GB PCIe": (1.64, 1.19), "NVIDIA RTX A5000": (0.27, 0.16)}
    async with run_fake_runpod(prices=extra) as runpod:
        env = runpod_env(runpod, db_dsn, worker_dsn, POOLS_FILE=EXAMPLE, MAX_ACTIVE_GPUS=8)
        got = verdicts((await asyncio.to_thread(cli, "check", "--json", **env)).out)
    assert got["pools-file"]["verdict"] == "PASS"
    assert got["pool:video"]["verdict"] == got["pool:small"]["verdict"] == "PASS", got
    assert "max_hourly_spend_usd $12.00 affords 4 at $2.99/h" in got["pool:video"]["detail"]
    assert "NVIDIA RTX A5000 $0.16/h in COMMUNITY" in got["pool:small"]["detail"]
    assert got["pools-routing"]["verdict"] == "PASS"
    assert got["pools-fleet-cap"]["verdict"] == "WARN"  # 4 + 6 > 8: the fleet cap binds


def test_a_bad_file_is_one_failed_line_naming_file_pool_and_key(
    cli: Cli, db_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(TWO_POOLS.replace("max_active_gpus = 1\n\n", "max_gpus = 1\n\n", 1))
    result = cli("check", "--json", DATABASE_URL=db_dsn, REACTOR_PROVIDER="local", POOLS_FILE=path)
    assert result.code == 1
    got = verdicts(result.out)
    assert got["pools-file"]["verdict"] == "FAIL"
    assert got["pools-file"]["detail"] == f"POOLS_FILE {path}: pool 'big': unknown key 'max_gpus'"
    assert not [name for name in got if name.startswith("pool:")]


def test_the_local_provider_checks_the_file_and_budgets_without_a_catalog(
    cli: Cli, db_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(TWO_POOLS.replace("max_active_gpus = 1\n", "gpu_hourly_price_usd = 0.5\n"))
    result = cli("check", DATABASE_URL=db_dsn, REACTOR_PROVIDER="local", POOLS_FILE=path)
    assert result.code == 0, result.out
    words = " ".join(result.out.split())
    assert "PASS pool:big local pods named 'NVIDIA H100 80GB HBM3' (no catalog)" in words
    assert "WARN pools-fleet-cap the pools' max_active_gpus add up to 4" in words
    assert "the fleet cap binds" in words


def test_without_a_pools_file_the_local_provider_adds_no_line(cli: Cli, db_dsn: str) -> None:
    result = cli("check", "--json", DATABASE_URL=db_dsn, REACTOR_PROVIDER="local")
    assert not [n for n in verdicts(result.out) if n.startswith("pool")]


# --- the judgement, pure ----------------------------------------------------------------


def judge(pools: dict[str, dict[str, Any]], **env: Any) -> dict[str, Any]:
    settings = make_settings(REACTOR_PROVIDER="runpod", **env)
    parsed = parse_pools({"pools": pools}, settings, "pools.toml")
    return {r.name: r for r in judge_pools(parsed, CATALOG, skipped="-")}


H100, L4 = "NVIDIA H100 80GB HBM3", "NVIDIA L4"


@pytest.mark.parametrize(
    ("pool", "verdict", "fragment"),
    [
        ({"runpod_gpu_types": [L4]}, "PASS", "NVIDIA L4 $0.43/h in SECURE; no hourly budget"),
        (
            {"runpod_gpu_types": [L4, H100], "max_hourly_spend_usd": 6.0},
            "PASS",
            "max_hourly_spend_usd $6.00 affords 2 at $2.99/h",
        ),
        (
            {"runpod_gpu_types": [H100], "max_hourly_spend_usd": 2.0},
            "FAIL",
            "max_hourly_spend_usd $2.00 affords no worker at $2.99/h (the dearest of its GPU "
            "types): the pool would never spawn",
        ),
        (
            {"runpod_gpu_types": [H100], "max_hourly_spend_usd": 2.0, "gpu_hourly_price_usd": 1.5},
            "PASS",
            "affords 1 at $1.50/h",  # the fixed price is what the spawn gate expects
        ),
        (
            {"runpod_gpu_types": ["RTX 4090"]},
            "FAIL",
            "'RTX 4090' is the catalog's display name of 'NVIDIA GeForce RTX 4090'",
        ),
        (
            {"runpod_gpu_types": ["NVIDIA H100 80GB"]},
            "FAIL",
            "did you mean 'NVIDIA H100 80GB HBM3'?",
        ),
    ],
)
def test_each_pool_is_judged_on_the_catalog(
    pool: dict[str, Any], verdict: str, fragment: str
) -> None:
    got = judge({"p": {"task_types": ["*"], **pool}})["pool:p"]
    assert got.verdict == verdict and fragment in got.detail, got


def test_a_type_not_offered_in_the_pools_cloud_fails() -> None:
    community_less = catalog_gpus(
        catalog({H100: ("H100 SXM", 80, 2.99, 0.0)}, list(DEFAULT_DATA_CENTERS), set(), False)
    )
    settings = make_settings(REACTOR_PROVIDER="runpod")
    pools = parse_pools(
        {"pools": {"p": {"runpod_gpu_types": [H100], "runpod_cloud": "COMMUNITY"}}},
        settings,
        "pools.toml",
    )
    [result, *_] = judge_pools(pools, community_less, skipped="-")
    assert result.verdict == "FAIL"
    assert "no price in the COMMUNITY cloud" in result.detail


def test_the_fleet_budget_binds_a_pool_that_asks_for_more() -> None:
    got = judge(
        {"p": {"runpod_gpu_types": [H100], "max_hourly_spend_usd": 10.0}},
        MAX_HOURLY_SPEND_USD=2.5,
    )["pool:p"]
    assert got.verdict == "FAIL"
    assert "the fleet's MAX_HOURLY_SPEND_USD $2.50 affords no worker" in got.detail


@pytest.mark.parametrize(
    ("first", "second", "warns"),
    [
        (["*"], ["image"], True),
        (["video", "image"], ["image", "video"], True),
        (["wan_*"], ["wan_14b"], True),
        (["wan_*"], ["wan_*"], True),
        (["video"], ["*"], False),  # the usual shape: the catch-all last
        (["video"], ["video", "image"], False),  # first choice for image
        (["wan_?"], ["wan_*"], False),  # not sure, so no warning
        (["wan*"], ["wan_*"], True),  # a glob within a glob
        (["*a*"], ["?a"], True),
        (["a*", "b*"], ["ab*"], True),
        (["wan_*"], ["wan*"], False),  # first choice for "wan", "wanx", ...
    ],
)
def test_a_pool_that_only_gets_spill_over_is_a_warning(
    first: list[str], second: list[str], warns: bool
) -> None:
    got = judge(
        {
            "first": {"task_types": first, "runpod_gpu_types": [L4]},
            "second": {"task_types": second, "runpod_gpu_types": [L4]},
        }
    )["pools-routing"]
    assert got.verdict == ("WARN" if warns else "PASS"), got
    if warns:
        assert "pool 'second' gets only spill-over: 'first' lists each of its task types" in (
            got.detail
        )


def test_shadowing_names_every_earlier_pool_it_takes() -> None:
    got = judge(
        {
            "a": {"task_types": ["video"], "runpod_gpu_types": [L4]},
            "b": {"task_types": ["image"], "runpod_gpu_types": [L4]},
            "c": {"task_types": ["image", "video"], "runpod_gpu_types": [L4]},
        }
    )["pools-routing"]
    assert got.verdict == "WARN"
    assert "pool 'c' gets only spill-over: 'a' and 'b' list each" in got.detail


def test_shadowed_by_is_sure_or_says_no() -> None:
    assert shadowed_by(["*"], "anything*")
    assert shadowed_by(["a*"], "abc") and not shadowed_by(["a*"], "b")
    assert shadowed_by(["a*"], "a?") and shadowed_by(["a?c"], "a?c")  # a glob in a glob
    assert not shadowed_by(["a?"], "a*") and not shadowed_by(["a*b"], "a*")


def test_the_fleet_cap_binding_is_a_warning_not_a_failure() -> None:
    got = judge(
        {
            "a": {"runpod_gpu_types": [L4], "max_active_gpus": 3},
            "b": {"runpod_gpu_types": [L4], "max_active_gpus": 3},
        }
    )["pools-fleet-cap"]
    assert got.verdict == "WARN"
    assert "add up to 6, above the fleet's MAX_ACTIVE_GPUS=4: the fleet cap binds" in got.detail
