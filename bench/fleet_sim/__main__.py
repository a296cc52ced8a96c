"""``python -m bench.fleet_sim``: the fleet simulator on its own (``make bench`` runs it
too, through bench/__main__.py)."""

from __future__ import annotations

import json
import sys

from bench.common import results_dir, set_results_dir
from bench.fleet_sim.main import parser, simulate_all, title, write_plots
from bench.fleet_sim.report import table


def entry(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.results is not None:
        set_results_dir(args.results)
    data = simulate_all(args)
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data["plots"] = [] if args.no_plot else write_plots(data, folder)
    (folder / "fleet_sim.json").write_text(json.dumps(data, indent=1, default=str))
    print(table(data["results"], title(data)))
    bad = [
        f"{w}/{p}"
        for w, runs in data["results"].items()
        for p, f in runs.items()
        if f["tasks_lost"] or f["cap_exceeded"] or f["budget_exceeded"]
    ]
    print(f"simulated in {data['wall_sec']:.1f} s; results in {folder}/fleet_sim.json")
    for path in data["plots"]:
        print(f"plot: {path}")
    if bad:
        print(f"MISBEHAVIOUR: tasks lost or caps exceeded in {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(entry())
