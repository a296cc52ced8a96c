"""Operator subcommands of `gpu-reactor`: status, check, workers, tasks, dashboard.

reactor/cli.py imports this module and calls ``register(sub, commands)``. Every handler is
``async def handler(args, settings) -> int``; errors a person can cause are ReactorError
subclasses with a one-line message (cli.main prints it and exits 2). ``Command`` is how
every module registers a subcommand with the CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from rich.text import Text

from reactor.logs import scrub
from reactor.ops import manual, observe
from reactor.ops.tables import (
    ended_workers_table,
    make_console,
    status_renderable,
    tasks_table,
    workers_by_pool,
)
from reactor.pools_file import load_pools
from reactor.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


@dataclass(frozen=True)
class Command:
    """A subcommand as the CLI runs it: ``handler(args, settings)``. With
    ``needs_settings=False`` it is ``handler(args)``, run without loading the reactor's
    settings, so a broken .env or environment cannot stop it (the demo brings its own)."""

    handler: Callable[..., Coroutine[Any, Any, int]]
    help: str
    needs_settings: bool = True
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


_STATUS_NAMES = {s.lower().replace(" ", ""): s for s in observe.TASK_STATUSES}


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def task_status(value: str) -> str:
    """Accept 'queued', 'in-progress', 'In Progress', ... as a task status."""
    key = value.lower().replace(" ", "").replace("-", "").replace("_", "")
    if key not in _STATUS_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown task status {value!r}; one of: {', '.join(observe.TASK_STATUSES)}"
        )
    return _STATUS_NAMES[key]


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {number:g}")
    return number


# --- status / check ----------------------------------------------------------------


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.ops.status import build_status, status_json
    from reactor.ops.status_pools import status_secrets

    async with observe.database(settings) as conn:
        state, leader = await observe.fresh_state(conn, settings)
    view = build_status(state, settings, leader_present=leader)
    if args.json:
        secrets = status_secrets(state, settings)
        sys.stdout.write(status_json(view, secrets, indent=True).decode() + "\n")
    else:
        make_console().print(status_renderable(view, state.pools))
    return 0


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.ops.checks import run_checks

    results = await run_checks(settings)
    if args.json:
        _print_json([r.__dict__ for r in results])
    else:
        console = make_console(highlight=False)
        styles = {"PASS": "green", "FAIL": "bold red", "WARN": "yellow", "SKIP": "dim"}
        width = max((len(r.name) for r in results), default=0) + 2
        for r in results:
            line = Text(f"{r.verdict:<5}", style=styles[r.verdict])
            line.append(f"{r.name:<{width}}{r.detail}")
            console.print(line, soft_wrap=True)
    failed = [r.name for r in results if r.verdict == "FAIL"]
    if not args.json:
        print(f"verdict: {'FAIL (' + ', '.join(failed) + ')' if failed else 'all checks passed'}")
    return 1 if failed else 0


# --- workers -------------------------------------------------------------------------


async def cmd_workers_list(args: argparse.Namespace, settings: Settings) -> int:
    pools = load_pools(settings)
    async with observe.database(settings) as conn:
        live = observe.with_pools(await observe.live_workers(conn), pools)
        ended = await observe.ended_workers(conn, args.ended) if args.ended else []
    ended = observe.with_pools(ended, pools)
    if args.json:
        _print_json({"live": live, "ended": ended})
        return 0
    console = make_console()
    for table in workers_by_pool(live, pools):
        console.print(table)
    if ended:
        console.print(ended_workers_table(ended))
    return 0


def _report(records: list[Any]) -> int:
    for record in records:
        print(scrub(manual.describe(record)))  # a provider's error may quote the pod's env
    return 0 if all(r.outcome == "ok" for r in records) else 1


async def cmd_workers_spawn(args: argparse.Namespace, settings: Settings) -> int:
    return _report(await manual.spawn(settings, args.count, force=args.force, pool=args.pool))


async def cmd_workers_drain(args: argparse.Namespace, settings: Settings) -> int:
    record = await manual.drain(settings, args.worker_id)
    code = _report([record])
    if record.outcome == "ok":
        print("the worker finishes its current task, then exits; the reactor retires it")
    return code


def _confirm(assume_yes: bool) -> Callable[[dict[str, Any]], bool]:
    def confirm(row: dict[str, Any]) -> bool:
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            raise manual.Refused(
                "refusing to terminate without confirmation: stdin is not a terminal; pass --yes"
            )
        tasks = row.get("tasks") or []
        answer = input(
            f"terminate worker {row['id']} (pod {row['pod_id'] or '-'}, {row['status']}"
            f"{f', {len(tasks)} task(s) in progress will be requeued' if tasks else ''})"
            f"? [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    return confirm


async def cmd_workers_terminate(args: argparse.Namespace, settings: Settings) -> int:
    record = await manual.terminate(settings, args.worker_id, _confirm(args.yes))
    return _report([record])


# --- tasks ---------------------------------------------------------------------------


async def cmd_tasks_create(args: argparse.Namespace, settings: Settings) -> int:
    ids = await manual.create_tasks(
        settings, args.type, args.params, count=args.count, priority=args.priority
    )
    if args.json:
        _print_json(ids)
    else:
        shown = ", ".join(ids[:5]) + (f", ... ({len(ids) - 5} more)" if len(ids) > 5 else "")
        print(f"queued {len(ids)} task(s) of type {args.type}: {shown}")
    return 0


async def cmd_tasks_list(args: argparse.Namespace, settings: Settings) -> int:
    async with observe.database(settings) as conn:
        rows = await observe.list_tasks(conn, args.status, args.limit)
    if args.json:
        _print_json(rows)
    else:
        title = f"tasks ({args.status or 'any status'}, most recently updated first)"
        make_console().print(tasks_table(rows, title))
    return 0


# --- dashboard -----------------------------------------------------------------------


async def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.ops.dashboard import run_dashboard

    return await run_dashboard(
        settings, interval=args.interval, iterations=args.iterations, export=args.export
    )


# --- wiring --------------------------------------------------------------------------


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handler: Handler = args.op
    return await handler(args, settings)


def _command(
    sub: Any, commands: dict[str, Command], name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    commands[name] = Command(handler, help_text)
    return parser


def _nested(parent: argparse.ArgumentParser, name: str) -> Any:
    group = parent.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")
    return group


def _json_flag(parser: argparse.ArgumentParser, what: str = "JSON instead of a table") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def _register_status(sub: Any, commands: dict[str, Command]) -> None:
    p = _command(
        sub,
        commands,
        "status",
        "what the fleet looks like now: queue, workers, "
        "leader, budget, recent actions (read from the database)",
        _dispatch,
    )
    p.set_defaults(op=cmd_status)
    _json_flag(p, "the same JSON as GET /status")
    p = _command(
        sub,
        commands,
        "check",
        "check the database, schema, LISTEN/NOTIFY, worker "
        "DSN and provider; exit 1 if any check fails",
        _dispatch,
    )
    p.set_defaults(op=cmd_check)
    _json_flag(p, "the verdicts as JSON")


def _register_workers(sub: Any, commands: dict[str, Command]) -> None:
    p = _command(sub, commands, "workers", "list, spawn, drain or terminate workers", _dispatch)
    group = _nested(p, "workers")
    q = group.add_parser(
        "list",
        help="live workers with their health",
        description="live workers with their health (active_workers_health)",
    )
    q.add_argument(
        "--ended",
        type=int,
        default=0,
        metavar="N",
        help="also show the N most recently ended workers",
    )
    _json_flag(q)
    q.set_defaults(op=cmd_workers_list)
    q = group.add_parser(
        "spawn",
        help="spawn workers now (same code and records as the reactor)",
        description="spawn workers now through the provider, within "
        "MAX_ACTIVE_GPUS and MAX_HOURLY_SPEND_USD",
    )
    q.add_argument("--count", type=positive, default=1, metavar="N", help="workers to spawn (1)")
    q.add_argument("--force", action="store_true", help="spawn even above the caps")
    q.add_argument(
        "--pool", metavar="NAME", help="the GPU pool to spawn in (POOLS_FILE; default: the first)"
    )
    q.set_defaults(op=cmd_workers_spawn)
    q = group.add_parser(
        "drain",
        help="ask a worker to finish its task and exit",
        description="mark a worker terminating: it takes no new task, "
        "finishes the current one, then the reactor retires it",
    )
    q.add_argument("worker_id", metavar="ID")
    q.set_defaults(op=cmd_workers_drain)
    q = group.add_parser(
        "terminate",
        help="end a worker now: requeue its tasks, terminate its pod",
        description="end a worker now: its row, its tasks (requeued) and its pod "
        "(asks for confirmation unless --yes)",
    )
    q.add_argument("worker_id", metavar="ID")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    q.set_defaults(op=cmd_workers_terminate)


def _register_tasks(sub: Any, commands: dict[str, Command]) -> None:
    p = _command(sub, commands, "tasks", "create test tasks or list tasks", _dispatch)
    group = _nested(p, "tasks")
    q = group.add_parser(
        "create", help="queue test tasks", description="queue tasks (one INSERT, so one wake-up)"
    )
    q.add_argument("--type", required=True, metavar="T", help="task_type of the new tasks")
    q.add_argument("--params", default="{}", metavar="JSON", help="params, a JSON object ({})")
    q.add_argument("--count", type=positive, default=1, metavar="N", help="how many (1)")
    q.add_argument("--priority", type=int, default=0, metavar="P", help="higher runs first (0)")
    _json_flag(q, "the new ids as JSON")
    q.set_defaults(op=cmd_tasks_create)
    q = group.add_parser(
        "list",
        help="tasks, most recently updated first",
        description="tasks, most recently updated first (params not shown)",
    )
    q.add_argument(
        "--status",
        type=task_status,
        default=None,
        metavar="S",
        help="Queued, 'In Progress', Complete, Failed or Cancelled",
    )
    q.add_argument("--limit", type=positive, default=20, metavar="N", help="at most N rows (20)")
    _json_flag(q)
    q.set_defaults(op=cmd_tasks_list)


def _register_dashboard(sub: Any, commands: dict[str, Command]) -> None:
    p = _command(
        sub,
        commands,
        "dashboard",
        "live terminal dashboard: queue, workers, activity, cost, alerts",
        _dispatch,
    )
    p.add_argument(
        "--interval",
        type=positive_float,
        default=3.0,
        metavar="SEC",
        help="seconds between refreshes (3)",
    )
    p.add_argument(
        "--iterations",
        type=positive,
        default=None,
        metavar="N",
        help="stop after N frames (default: until Ctrl-C)",
    )
    p.add_argument("--export", action="store_true", help="print one JSON snapshot and exit")
    p.set_defaults(op=cmd_dashboard)


def register(sub: Any, commands: dict[str, Command]) -> None:
    _register_status(sub, commands)
    _register_workers(sub, commands)
    _register_tasks(sub, commands)
    _register_dashboard(sub, commands)
