"""Fixtures of the fault suite: a ``rig`` per scenario (see rig.py), and the figures of
every scenario, printed at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.runpod_v2 import run_fake_runpod
from tests.faults.rig import FaultRig

FIGURES = pytest.StashKey[list[dict[str, Any]]]()


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, db_dsn: str, worker_dsn: str, tmp_path: Path
) -> AsyncIterator[FaultRig]:
    """The scenario's world. On the way out every process still running (reactors, pod
    workers) is killed, and the test fails if there was any."""
    async with run_fake_runpod() as runpod:
        rig = FaultRig(
            name=request.node.name,
            db_dsn=db_dsn,
            worker_dsn=worker_dsn,
            runpod=runpod,
            tmp_path=tmp_path,
        )
        rig.pods.start_watch()
        rig.checker.start()
        try:
            yield rig
        finally:
            leftovers = await rig.close()
    call = getattr(request.node, "report_call", None)
    if leftovers and call is not None and call.passed:  # a failed test has said enough
        pytest.fail(f"the scenario left processes running: {leftovers}")


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Any:
    """``record_figures(row)``: keep a scenario's figures for the end-of-run summary."""

    def record(row: dict[str, Any]) -> None:
        request.config.stash.setdefault(FIGURES, []).append(row)

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.report_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(FIGURES, [])
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault scenarios")
    write(
        f"{'scenario':<58} {'sec':>5} {'tasks':>5} {'done':>5} {'fail':>4} {'execs':>5} "
        f"{'refused':>7} {'faults':>6} {'maxpods':>7} {'maxUSD/h':>8} {'lost':>4} {'dup':>3}"
    )
    for r in rows:
        write(
            f"{r['scenario'][:58]:<58} {r['seconds']:>5} {r['tasks']:>5} {r['complete']:>5} "
            f"{r['failed']:>4} {r['executions']:>5} {r['refused_completions']:>7} "
            f"{r['faults_total']:>6} {r['max_live_pods']:>7} {r['max_hourly_cost']:>8} "
            f"{r['lost']:>4} {r['duplicated']:>3}"
        )
    for r in rows:
        if r["faults"]:
            write(f"  {r['scenario'][:58]}: {r['faults']}")
    totals = {
        k: sum(r[k] for r in rows)
        for k in ("tasks", "complete", "failed", "executions", "faults_total", "lost", "duplicated")
    }
    write(f"total: {len(rows)} scenarios, {totals}")
