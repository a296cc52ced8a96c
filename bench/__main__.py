"""``python -m bench``: run gpu-reactor's benchmarks beside their peers on one Postgres.

Starts a throwaway PostgreSQL in a temporary folder (durable commits unless --fast),
runs every benchmark or those named by --only, prints a table per benchmark, writes
bench/results/<name>.json and bench/results/summary.json, and removes the Postgres.
Exit status: 0 when every benchmark ran and the system behaved, 1 when a benchmark saw
the system misbehave (a task lost or claimed twice) or crashed. Figures never fail it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import (
    Context,
    Misbehaviour,
    NotRun,
    describe_machine,
    results_dir,
    set_results_dir,
    write_result,
)
from reactor.db.embedded import EmbeddedPostgres

# In the order.
BENCHMARKS = [
    "reaction_latency",
    "insert_overhead",
    "trigger_cost",
    "storm",
    "claim_throughput",
    "reconcile_cost",
    "recovery",
    "scale_curve",
    "fleet_sim",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", default="", help="comma-separated names: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (~2 min)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smallest sizes, for the smoke test: proves the code runs, the figures mean little",
    )
    parser.add_argument(
        "--fast", action="store_true", help="fsync and synchronous_commit off (figures then say so)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder for the JSON results (default bench/results)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}")
    args.names = names
    args.quick = args.quick or args.tiny
    return args


async def run_one(name: str, ctx: Context) -> tuple[str, dict[str, Any]]:
    module = importlib.import_module(f"bench.{name}")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        result = await module.run(ctx)
        status = "ok"
    except NotRun as exc:
        result, status = (
            {"name": name, "not_run": str(exc), "table": f"### {name}\n\nnot run: {exc}\n"},
            "not_run",
        )
    except Misbehaviour as exc:
        result, status = (
            {
                "name": name,
                "misbehaviour": str(exc),
                "table": f"### {name}\n\nMISBEHAVIOUR: {exc}\n",
            },
            "misbehaviour",
        )
    except Exception as exc:  # a crash of the benchmark itself: report, go on, exit 1
        result, status = (
            {
                "name": name,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "table": f"### {name}\n\nERROR: {type(exc).__name__}: {exc}\n",
            },
            "error",
        )
        traceback.print_exc()
    result["status"] = status
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["durable_commits"] = ctx.durable
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_result(name, result)
    return status, result


def write_summary(
    machine: dict[str, Any],
    results: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    seconds: float,
) -> None:
    path = results_dir() / "summary.json"
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("benchmarks", {})
        except (OSError, ValueError):
            previous = {}
    for name, result in results.items():
        previous[name] = {
            k: v
            for k, v in result.items()
            if k
            in (
                "status",
                "target",
                "headline",
                "not_run",
                "misbehaviour",
                "error",
                "seconds",
                "at",
                "durable_commits",
                "load_average",
            )
        }
        previous[name]["quick"] = args.quick
    data = {
        "machine": machine,
        "last_run": {
            "benchmarks": args.names,
            "quick": args.quick,
            "tiny": args.tiny,
            "seconds": round(seconds, 1),
        },
        "benchmarks": previous,
    }
    write_result("summary", data)


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-reactor-bench-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "data", fast=args.fast)
        admin_dsn = await asyncio.to_thread(pg.start)
        try:
            ctx = Context(
                pg=pg, admin_dsn=admin_dsn, quick=args.quick, tiny=args.tiny, durable=not args.fast
            )
            machine = await describe_machine(ctx)
            print(f"# gpu-reactor benchmarks ({'quick' if args.quick else 'full'} run)\n")
            print(
                f"Machine: {machine['cpu_model']}, {machine['cores']} cores, "
                f"{machine['ram_gib']} GiB RAM; PostgreSQL {machine['postgres_version']} "
                f"({'durable commits: fsync on' if ctx.durable else 'fast: fsync off'}); "
                f"Python {machine['python_version']}\n",
                flush=True,
            )
            results: dict[str, dict[str, Any]] = {}
            failed = False
            for name in args.names:
                status, result = await run_one(name, ctx)
                results[name] = result
                failed = failed or status in ("misbehaviour", "error")
                print(result["table"], flush=True)
                for note in result.get("notes", []):
                    print(f"- {note}")
                load = result["load_average"]
                print(
                    f"({name}: {result['seconds']} s; 1-minute load average {load[0]} → "
                    f"{load[1]} on {machine['cores']} cores)\n",
                    flush=True,
                )
            seconds = time.perf_counter() - started
            write_summary(machine, results, args, seconds)
            print(f"Total: {seconds:.0f} s. Results in {results_dir()}/")
        finally:
            await asyncio.to_thread(pg.destroy)
    if failed:
        print("FAILED: the system misbehaved or a benchmark crashed (see above)", file=sys.stderr)
        return 1
    return 0


def entry(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.results is not None:
        set_results_dir(args.results)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        import uvloop

        return uvloop.run(main(args))
    except ImportError:
        return asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(entry())
