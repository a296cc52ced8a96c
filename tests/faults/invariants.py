"""The invariants every fault scenario must keep, checked during it and at its end.

During (``InvariantChecker``, every ~50 ms and at every pod create): live pods never exceed
MAX_ACTIVE_GPUS and their summed cost never exceeds MAX_HOURLY_SPEND_USD.

At the end (``check_tasks``, ``fleet_problems``, ``duplicate_pods``): every task ended
Complete, or Failed only as a poison task out of attempts; none is lost; no task was
completed twice (accepted completions per task, from the workers' own logs, are at most
one; a processor never ran more often than the task was claimed; a stored result comes
from an execution that really finished); no pod was created twice for one worker; and,
once settled, no fleet pod exists that a live workers row does not explain and no live
row lacks its pod.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.fakes.runpod_v2 import FakePod, FakeRunpod
from tests.faults.reactors import read_events

LIVE_POD_STATES = ("PROVISIONING", "STARTING", "RUNNING")
LIVE_ROW_STATES = ("spawning", "active", "terminating")


# --- the processors' ledger ---------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    key: str
    nonce: str
    pid: int
    ended: bool


class Ledger:
    """Reads the file tests/faults/processors.py appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def executions(self) -> dict[str, list[Execution]]:
        if not self.path.exists():
            return {}
        ends = set()
        starts = []
        for line in self.path.read_text().splitlines():
            kind, key, nonce, pid = line.split()
            if kind == "end":
                ends.add(nonce)
            else:
                starts.append((key, nonce, int(pid)))
        found: dict[str, list[Execution]] = {}
        for key, nonce, pid in starts:
            found.setdefault(key, []).append(Execution(key, nonce, pid, nonce in ends))
        return found

    def running(self) -> list[Execution]:
        """Executions begun and not (yet) ended."""
        return [e for runs in self.executions().values() for e in runs if not e.ended]


# --- sampled during a scenario ---------------------------------------------------------------
def fleet_pods(runpod: FakeRunpod, fleet: str = "gpu-reactor") -> list[FakePod]:
    """Pods of the fleet that exist at the provider (any status but TERMINATED)."""
    return [
        p
        for p in list(runpod.pods.values())
        if p.name.startswith(f"{fleet}-") and p.env.get("GPU_REACTOR_FLEET") == fleet
    ]


class InvariantChecker:
    def __init__(
        self, runpod: FakeRunpod, *, max_pods: int, max_spend: float | None, interval: float = 0.05
    ) -> None:
        self.runpod = runpod
        self.max_pods = max_pods
        self.max_spend = max_spend
        self.interval = interval
        self.observations = 0
        self.max_live = 0
        self.max_cost = 0.0
        self.violations: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def live_pods(self) -> list[FakePod]:
        now = self.runpod.clock()
        return [p for p in list(self.runpod.pods.values()) if p.status_at(now) in LIVE_POD_STATES]

    def observe(self, where: str = "sample") -> None:
        live = self.live_pods()
        cost = round(self.runpod.hourly_cost(), 4)
        self.observations += 1
        self.max_live = max(self.max_live, len(live))
        self.max_cost = max(self.max_cost, cost)
        if len(live) > self.max_pods:
            self.violations.append(
                f"{where}: {len(live)} live pods > MAX_ACTIVE_GPUS="
                f"{self.max_pods}: {sorted(p.name for p in live)}"
            )
        if self.max_spend is not None and cost > self.max_spend + 1e-9:
            self.violations.append(
                f"{where}: pods cost {cost} USD/h > MAX_HOURLY_SPEND_USD="
                f"{self.max_spend}: {sorted(p.name for p in live)}"
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="invariant-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _sample(self) -> None:
        while True:
            self.observe()
            await asyncio.sleep(self.interval)

    def assert_held(self) -> None:
        assert not self.violations, "invariants broken during the scenario:\n" + "\n".join(
            self.violations[:20]
        )


# --- checked at the end ---------------------------------------------------------------------
@dataclass
class TaskFigures:
    tasks: int = 0
    complete: int = 0
    failed: int = 0
    executions: int = 0
    refused_completions: int = 0  # late completions the fence turned away
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)


def completions(worker_logs: list[Path]) -> tuple[Counter[str], Counter[str]]:
    """Accepted and refused completions per task id, from every worker's JSON log."""
    accepted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for path in worker_logs:
        for record in read_events(path):
            if record.get("event") == "task_completed":
                accepted[record["task_id"]] += 1
            elif record.get("event") == "lease_lost":
                refused[record["task_id"]] += 1
    return accepted, refused


def _check_one(
    row: asyncpg.Record, runs: list[Execution], poison: bool, accepted: int
) -> list[str]:
    tid, status, attempts = str(row["id"]), row["status"], row["attempts"]
    problems = []
    if len(runs) > attempts:
        problems.append(f"{tid}: {len(runs)} executions but only {attempts} claims")
    if accepted > 1:
        problems.append(f"{tid}: completed {accepted} times")
    if poison:
        if status != "Failed" or attempts != row["max_attempts"] or len(runs) != attempts:
            problems.append(
                f"{tid} (poison): {status} after {attempts}/{row['max_attempts']} "
                f"attempts and {len(runs)} executions"
            )
        return problems
    if status != "Complete":
        return [*problems, f"{tid}: {status} after {attempts} attempts: {row['error_message']}"]
    result = json.loads(row["result"]) if row["result"] else {}
    finished = {e.nonce for e in runs if e.ended}
    if result.get("key") != tid or result.get("nonce") not in finished:
        problems.append(f"{tid}: result {result} is from no finished execution")
    return problems


async def check_tasks(
    conn: asyncpg.Connection,
    expected: set[str],
    poison: set[str],
    ledger: Ledger,
    worker_logs: list[Path],
) -> TaskFigures:
    rows = await conn.fetch(
        "SELECT id, status::text AS status, attempts, max_attempts, error_message, "
        "result_data::text AS result FROM tasks"
    )
    runs = ledger.executions()
    accepted, refused = completions(worker_logs)
    figures = TaskFigures(tasks=len(rows))
    found = {str(r["id"]) for r in rows}
    figures.lost = len(expected - found)
    if expected - found:
        figures.problems.append(f"lost tasks: {sorted(expected - found)[:5]}")
    if found - expected:
        figures.problems.append(f"tasks nobody queued: {sorted(found - expected)[:5]}")
    for row in rows:
        tid = str(row["id"])
        problems = _check_one(row, runs.get(tid, []), tid in poison, accepted[tid])
        figures.duplicated += accepted[tid] > 1
        figures.problems += problems
        figures.complete += row["status"] == "Complete"
        figures.failed += row["status"] == "Failed"
    figures.executions = sum(len(v) for v in runs.values())
    figures.refused_completions = sum(refused.values())
    return figures


async def fleet_problems(conn: asyncpg.Connection, runpod: FakeRunpod) -> list[str]:
    """Why the fleet is not settled and consistent; [] when it is."""
    rows = await conn.fetch(
        "SELECT id, pod_id, status, managed FROM workers WHERE status = ANY($1::text[])",
        list(LIVE_ROW_STATES),
    )
    pods = fleet_pods(runpod)
    by_id = {p.id: p for p in pods}
    problems = [f"worker {r['id']} is still {r['status']}" for r in rows if r["status"] != "active"]
    problems += [
        f"worker {r['id']} has no pod ({r['pod_id']})"
        for r in rows
        if r["managed"] and r["pod_id"] not in by_id
    ]
    explained = {r["pod_id"] for r in rows}
    problems += [
        f"pod {p.id} ({p.name}, {p.status_at(runpod.clock())}) has no live worker row"
        for p in pods
        if p.id not in explained
    ]
    problems += [
        f"pod {p.id} ({p.name}) is {p.forced_status}"
        for p in pods
        if p.forced_status is not None and p.id in explained
    ]
    return problems


def duplicate_pods(runpod: FakeRunpod) -> list[str]:
    """Workers that got more than one pod."""
    names = Counter(p.name for p in runpod.created)
    return [f"{name}: {n} pods" for name, n in names.items() if n > 1]


def figures_row(
    name: str, seconds: float, tasks: TaskFigures, checker: InvariantChecker, faults: Counter[str]
) -> dict[str, Any]:
    return {
        "scenario": name,
        "seconds": round(seconds, 1),
        "tasks": tasks.tasks,
        "complete": tasks.complete,
        "failed": tasks.failed,
        "executions": tasks.executions,
        "refused_completions": tasks.refused_completions,
        "faults": dict(faults),
        "faults_total": sum(faults.values()),
        "observations": checker.observations,
        "max_live_pods": checker.max_live,
        "max_hourly_cost": checker.max_cost,
        "lost": tasks.lost,
        "duplicated": tasks.duplicated,
    }
