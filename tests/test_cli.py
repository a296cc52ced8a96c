"""The CLI's wiring: every subcommand registered by explicit import, and the settings
loaded only for the commands that need them (a broken .env must not stop the demo)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reactor.cli import CORE_COMMANDS, build_parser, main
from reactor.ops.commands import Command
from reactor.settings import Settings

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Run]:
    """``run("once")`` in ``tmp_path`` with no setting in the environment: (code, out, err)."""
    monkeypatch.chdir(tmp_path)
    for name, field in Settings.model_fields.items():
        monkeypatch.delenv(field.alias or name.upper(), raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    yield call
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def broken_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://u:p@db/app\nMAX_ACTIVE_GPUS=lots\n")


def test_every_subcommand_is_registered() -> None:
    commands: dict[str, Command] = dict(CORE_COMMANDS)
    parser = build_parser(commands)
    expected = {"migrate", "uninstall", "run", "once", "status", "check", "workers", "tasks"}
    expected |= {"dashboard"}
    assert expected | {"demo"} == set(commands)
    assert parser.parse_args(["demo", "--duration", "30"]).command == "demo"
    assert [name for name, c in commands.items() if not c.needs_settings] == ["demo"]


@pytest.mark.usefixtures("broken_env")
def test_a_broken_env_file_does_not_stop_the_demo(run: Run) -> None:
    code, out, _ = run("demo", "--help")
    assert code == 0 and "--duration" in out
    # The demo's handler runs (and refuses this duration) instead of the settings failing.
    code, _, err = run("demo", "--duration", "1")
    assert (code, err) == (2, "gpu-reactor: --duration must be at least 20 seconds\n")


@pytest.mark.usefixtures("broken_env")
def test_a_broken_env_file_stops_a_command_that_needs_the_settings_in_one_line(
    run: Run,
) -> None:
    code, out, err = run("once")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gpu-reactor: invalid setting MAX_ACTIVE_GPUS")
