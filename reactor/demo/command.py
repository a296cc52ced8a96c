"""`gpu-reactor demo`: the subcommand, its options, and the run it starts (reactor/demo/run.py)."""

from __future__ import annotations

import argparse
from typing import Any

from reactor.demo.config import DEFAULT_PORT
from reactor.demo.run import Demo
from reactor.errors import ConfigError
from reactor.ops.commands import Command


async def cmd_demo(args: argparse.Namespace) -> int:
    """Runs without the reactor's settings (none of them applies to the demo): a broken
    .env in the working directory cannot stop it."""
    if args.tasks < 4:
        raise ConfigError("--tasks must be at least 4")
    if args.duration < 20:
        raise ConfigError("--duration must be at least 20 seconds")
    return await Demo(args).run()


def register(sub: Any, commands: dict[str, Command]) -> None:
    help_text = (
        "the whole system on this machine: embedded Postgres, the reactor, local "
        "workers in two GPU pools, a workload with one worker killed; a summary at the end"
    )
    parser = sub.add_parser("demo", help=help_text, description=help_text)
    parser.add_argument(
        "--duration",
        type=float,
        default=90.0,
        metavar="SEC",
        help="length of the run in seconds (default 90)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=40,
        metavar="N",
        help="tasks to queue over the run, video and image ones (default 40)",
    )
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="plain lines instead of the live dashboard (for CI; also when "
        "stdout is not a terminal)",
    )
    parser.add_argument(
        "--data-dir",
        default=".gpu-reactor",
        metavar="DIR",
        help="where the demo keeps Postgres (DIR/demo-pg) and logs (default .gpu-reactor)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="P",
        help=f"port of /status and /metrics (default {DEFAULT_PORT}, or a free "
        "one when it is taken; 0: a free one)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="DSN",
        help="use this (idle) database instead of an embedded one; "
        "DATABASE_URL from the environment is never used by the demo",
    )
    parser.add_argument(
        "--json-summary",
        default=None,
        metavar="PATH",
        help="also write the closing summary as JSON to PATH",
    )
    commands["demo"] = Command(cmd_demo, help_text, needs_settings=False)
