"""`gpu-reactor`: one entry point, one subcommand per job.

Errors a person can cause print one line and exit non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import orjson

from reactor.db.errors import TRANSIENT_DB_ERRORS
from reactor.demo import command as demo_command
from reactor.errors import ReactorError
from reactor.logs import register_secrets, scrub, setup_logging
from reactor.ops import commands as ops_commands
from reactor.ops.commands import Command
from reactor.settings import Settings, load_settings


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.db.connect import connect
    from reactor.db.migrate import migrate, plan

    conn = await connect(settings.dsn())
    # What migrate changes outside its own schema, it says (RAISE NOTICE 'gpu-reactor: ...').
    conn.add_log_listener(
        lambda _conn, message: (
            print(message.message) if message.message.startswith("gpu-reactor:") else None
        )
    )
    try:
        if args.plan:
            state, steps = await plan(conn)
            print(f"-- gpu-reactor migrate --plan: this database is {state}; nothing was changed")
            for step in steps:
                where = "in a transaction" if step.in_transaction else "outside a transaction"
                print(f"\n-- {step.source}, {where}\n{step.sql}")
            print(f"\n-- {len(steps)} statements" if steps else "-- schema is up to date")
            return 0
        applied = await migrate(conn)
    finally:
        await conn.close()
    if applied:
        print("applied: " + ", ".join(applied))
    else:
        print("schema is up to date")
    return 0


def _migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print what migrate would do, statement by statement, and change nothing",
    )


async def cmd_uninstall(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.db.connect import connect
    from reactor.db.uninstall import plan_removal, uninstall

    conn = await connect(settings.dsn())
    try:
        if not args.yes:
            removal = await plan_removal(conn, drop_tables=args.drop_tables)
        else:
            removal = await uninstall(conn, drop_tables=args.drop_tables, force=args.force)
    finally:
        await conn.close()
    verb = "ran" if args.yes else "would run (nothing changed; --yes runs it)"
    print(f"-- gpu-reactor uninstall {verb}:")
    for statement in removal.statements:
        print(statement + ";")
    for kept in removal.kept:
        print(f"-- kept: {kept}")
    return 0


def _uninstall_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="remove it (else only print the plan)")
    parser.add_argument(
        "--drop-tables",
        action="store_true",
        help="also drop the tasks and workers tables and task_status, if gpu-reactor made them",
    )
    parser.add_argument(
        "--force", action="store_true", help="even while workers gpu-reactor started are live"
    )


async def cmd_once(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.engine.service import Reactor

    summary = await Reactor(settings).once()
    _print_json(summary)
    return 0 if summary.get("leader") else 3


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from reactor.engine.service import Reactor
    from reactor.http.server import start_http

    reactor = Reactor(settings)
    _install_signals(reactor.stop_event)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reactor.reload)
    http = await start_http(reactor) if settings.reactor_http_port else None
    try:
        code = await reactor.serve()  # until SIGTERM, then the shutdown ladder
    finally:
        if http is not None:
            await http.cleanup()
    if code:
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """The reactor did not unwind after its cancel (the stacks are logged): leave now,
    rather than hang in the event loop's clean-up, which would wait for it forever."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


CORE_COMMANDS: dict[str, Command] = {
    "migrate": Command(
        cmd_migrate,
        "create or update the schema (idempotent; --plan to review)",
        arguments=_migrate_arguments,
    ),
    "uninstall": Command(
        cmd_uninstall,
        "remove gpu-reactor's schema, triggers and changes from the database (--yes)",
        arguments=_uninstall_arguments,
    ),
    "run": Command(cmd_run, "run the reactor continuously, with /metrics and /status"),
    "once": Command(cmd_once, "run one full reconcile and print a JSON summary"),
}


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """The parser; ``commands`` (a fresh copy of CORE_COMMANDS by default) receives every
    subcommand, the operator commands' and the demo's included."""
    commands = dict(CORE_COMMANDS) if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="gpu-reactor",
        description="Event-driven GPU fleet controller for task queues in Postgres. "
        "Settings come from the environment and .env (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in CORE_COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if command.arguments:
            command.arguments(p)
    ops_commands.register(sub, commands)
    demo_command.register(sub, commands)
    return parser


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    commands = dict(CORE_COMMANDS)
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    command = commands[args.command]
    try:
        if not command.needs_settings:  # reads none of them: a broken .env must not stop it
            setup_logging()
            return _run(command.handler(args))
        settings = load_settings()
        register_secrets(settings.secrets())
        setup_logging(settings.log_level, settings.log_format)
        return _run(command.handler(args, settings))
    except ReactorError as exc:
        print(f"gpu-reactor: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except TRANSIENT_DB_ERRORS as exc:
        print(
            f"gpu-reactor: database or network error: {scrub(str(exc)) or type(exc).__name__}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
