"""Run every policy on every workload's trace, print the table, write the JSON and plots."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.fleet_sim.report import add_ratios, plot
from bench.fleet_sim.run import LOWER_BOUND, bound, policies, simulate
from bench.fleet_sim.workloads import WORKLOADS, build
from bench.fleet_sim.world import WorldConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.fleet_sim",
        description="Fleet simulator: gpu-reactor's real policy against the seed's rule, "
        "a KEDA-style rule and a lower bound, on simulated time.",
    )
    p.add_argument("--hours", type=float, default=24.0, help="simulated span (default 24)")
    p.add_argument("--seed", type=int, default=1, help="the traces' and the world's seed")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    p.add_argument("--policies", default="", help="comma-separated names (default: all)")
    p.add_argument("--max-gpus", type=int, default=40, help="MAX_ACTIVE_GPUS of every policy")
    p.add_argument("--budget", type=float, default=None, help="MAX_HOURLY_SPEND_USD")
    p.add_argument("--startup-median", type=float, default=90.0, help="seconds")
    p.add_argument("--startup-max", type=float, default=300.0, help="seconds: the tail's end")
    p.add_argument(
        "--capacity-error-rate", type=float, default=0.05, help="per GPU type, per create"
    )
    p.add_argument("--deaths-per-pod-hour", type=float, default=0.01)
    p.add_argument("--results", type=Path, default=None, help="folder (default bench/results)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    return p


def config_of(args: argparse.Namespace) -> WorldConfig:
    return WorldConfig(
        startup_median=args.startup_median,
        startup_max=args.startup_max,
        capacity_error_rate=args.capacity_error_rate,
        deaths_per_pod_hour=args.deaths_per_pod_hour,
        max_active_gpus=args.max_gpus,
        max_hourly_spend_usd=args.budget,
    )


def simulate_all(args: argparse.Namespace) -> dict[str, Any]:
    config = config_of(args)
    span = args.hours * 3600
    wanted = {n.strip() for n in args.policies.split(",") if n.strip()}
    chosen = [p for p in policies(config) if not wanted or p.name in wanted]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.perf_counter()
    for workload in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        specs = build(workload, args.seed, span)
        runs = {p.name: simulate(specs, p, config, args.seed, span) for p in chosen}
        runs[LOWER_BOUND] = bound(specs, config, args.seed)
        add_ratios(runs)
        results[workload] = runs
    return {
        "hours": args.hours,
        "seed": args.seed,
        "config": config.__dict__,
        "policies": {p.name: p.settings for p in chosen},
        "results": results,
        "wall_sec": time.perf_counter() - started,
    }


def title(data: dict[str, Any]) -> str:
    c = data["config"]
    return (
        f"Fleet simulator: {data['hours']:g} simulated hours, seed {data['seed']}, "
        f"MAX_ACTIVE_GPUS {c['max_active_gpus']}, start-up median {c['startup_median']:g} s "
        f"(tail to {c['startup_max']:g} s), capacity errors {c['capacity_error_rate']:g} per "
        f"type, {c['deaths_per_pod_hour']:g} deaths per pod-hour"
    )


def write_plots(data: dict[str, Any], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for workload, runs in data["results"].items():
        path = plot(workload, runs, folder)
        if path is not None:
            paths.append(str(path))
    return paths
