"""The fleet simulator: a discrete-event simulation, on simulated time, of the reactor's
real deciding code (policy.decide, next_deadline, the spawn gate, the wake schedule)
against the seed orchestrator's rule, a KEDA-style rule and a lower bound.

``python -m bench.fleet_sim --help``; ``make bench`` runs it as the benchmark
``fleet_sim`` (this module's ``run``).
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "fleet_sim"


async def run(ctx: Any) -> dict[str, Any]:
    """As a benchmark of ``python -m bench``: a day (an hour with --tiny) of every
    workload; no Postgres needed."""
    from bench.common import Misbehaviour, results_dir
    from bench.fleet_sim.main import parser, simulate_all, title, write_plots
    from bench.fleet_sim.report import table

    args: argparse.Namespace = parser().parse_args(
        ["--hours", "1" if ctx.tiny else ("6" if ctx.quick else "24")]
    )
    data = simulate_all(args)
    data["plots"] = write_plots(data, results_dir())
    bad = [
        f"{w}/{p}"
        for w, runs in data["results"].items()
        for p, f in runs.items()
        if f["tasks_lost"] or f["cap_exceeded"] or f["budget_exceeded"]
    ]
    if bad:
        raise Misbehaviour(f"tasks lost or caps exceeded in {bad}")
    return {
        "name": NAME,
        **data,
        "headline": {
            w: {
                p: {"gpu_hours": f["gpu_hours"], "p95_wait": f["wait_sec"]["p95"]}
                for p, f in runs.items()
            }
            for w, runs in data["results"].items()
        },
        "table": table(data["results"], title(data)),
    }
