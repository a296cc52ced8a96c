"""The fleet simulator's figures as a table (README, terminal), JSON and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import fmt, render_table
from bench.fleet_sim.run import LOWER_BOUND

SEED = "seed rule"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def add_ratios(runs: dict[str, dict[str, Any]]) -> None:
    """Per policy of one workload: GPU-hours and p95 wait over the seed rule's, and
    GPU-hours over the lower bound's."""
    seed, lb = runs.get(SEED), runs.get(LOWER_BOUND)
    for f in runs.values():
        f["vs_seed"] = {
            "gpu_hours": _ratio(f["gpu_hours"], seed["gpu_hours"]) if seed else None,
            "p95_wait": _ratio(f["wait_sec"]["p95"], seed["wait_sec"]["p95"]) if seed else None,
        }
        f["vs_lower_bound"] = {
            "gpu_hours": _ratio(f["gpu_hours"], lb["gpu_hours"]) if lb else None,
        }


def _ok(f: dict[str, Any]) -> str:
    bad = f["tasks_lost"] or f["cap_exceeded"] or f["budget_exceeded"]
    return (
        "ok"
        if not bad
        else (f"LOST {f['tasks_lost']} / CAP {f['cap_exceeded']} / BUDGET {f['budget_exceeded']}")
    )


def table(results: dict[str, dict[str, dict[str, Any]]], title: str) -> str:
    rows = []
    for workload, runs in results.items():
        for name, f in runs.items():
            w = f["wait_sec"]
            rows.append(
                [
                    workload,
                    name,
                    fmt(f["gpu_hours"], 1),
                    fmt(f["usd"], 2),
                    f"{fmt(w['p50'], 0)} / {fmt(w['p95'], 0)} / {fmt(w['p99'], 0)}",
                    f"{100 * f['idle_share']:.0f} %",
                    fmt(f["pods_created"], 0),
                    fmt(f["vs_seed"]["gpu_hours"], 2),
                    fmt(f["vs_seed"]["p95_wait"], 2),
                    fmt(f["vs_lower_bound"]["gpu_hours"], 2),
                    _ok(f),
                ]
            )
    return render_table(
        title,
        [
            "workload",
            "policy",
            "GPU-h",
            "USD",
            "wait p50 / p95 / p99 s",
            "idle",
            "pods",
            "GPU-h / seed",
            "p95 / seed",
            "GPU-h / bound",
            "lost, caps",
        ],
        rows,
    )


def plot(workload: str, runs: dict[str, dict[str, Any]], folder: Path) -> Path | None:
    """Fleet size and queue depth over the span, a line per policy (matplotlib; None when
    it is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for name, f in runs.items():
        if not f.get("series"):
            continue
        hours = [t / 3600 for t, _, _ in f["series"]]
        top.plot(hours, [n for _, n, _ in f["series"]], label=name, linewidth=1)
        bottom.plot(hours, [q for _, _, q in f["series"]], label=name, linewidth=1)
    top.set_ylabel("live pods")
    bottom.set_ylabel("Queued tasks")
    bottom.set_xlabel("simulated hours")
    top.set_title(f"fleet simulator: {workload}")
    top.legend(fontsize=8)
    fig.tight_layout()
    path = folder / f"fleet_sim_{workload}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
