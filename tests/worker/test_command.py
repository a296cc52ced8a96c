"""The command processor in-process: output parsing, failures, killing the whole group."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from pathlib import Path

import pytest

from tests.worker.helpers import process_alive, wait_until
from worker.command import CommandProcessor, parse_output
from worker.db import ClaimedTask
from worker.errors import ProcessorError


def claimed(params: object = None) -> ClaimedTask:
    return ClaimedTask(
        id=uuid.uuid4(), task_type="video", params=params or {}, attempt=2, max_attempts=3
    )


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b'{"a": 1}\n', {"a": 1}),
        (b"[1, 2]", [1, 2]),
        (b'step 1/3\nstep 3/3\n{"video": "out.mp4"}\n', {"video": "out.mp4"}),
        (b'  "just a string"  ', "just a string"),
    ],
)
def test_parse_output(stdout: bytes, expected: object) -> None:
    assert parse_output(stdout) == expected


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (b"", "printed nothing on stdout"),
        (b"\n  \n", "printed nothing on stdout"),
        (b"done!\n", "stdout is not JSON"),
        (b'{"a": 1}\nbye\n', "stdout is not JSON"),
    ],
)
def test_parse_output_rejects(stdout: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_output(stdout)


async def test_params_in_result_out(tmp_path: Path) -> None:
    script = tmp_path / "double.py"
    script.write_text(
        "import json, sys\np = json.load(sys.stdin)\nprint(json.dumps({'double': p['x'] * 2}))\n"
    )
    proc = CommandProcessor(f"python3 {script}", timeout=10)
    assert await proc(claimed({"x": 21})) == {"double": 42}


async def test_a_program_killed_by_a_signal(tmp_path: Path) -> None:
    proc = CommandProcessor("sh -c 'echo dying >&2; kill -9 $$'", timeout=10)
    with pytest.raises(ProcessorError) as caught:
        await proc(claimed())
    assert str(caught.value) == "command killed by SIGKILL; stderr tail:\ndying"


async def test_a_missing_program() -> None:
    with pytest.raises(ProcessorError, match="cannot start command '/no/such/program'"):
        await CommandProcessor("/no/such/program --flag", timeout=10)(claimed())


def _group_script(tmp_path: Path) -> tuple[Path, Path]:
    """A program that starts a grandchild, records both pids, and waits forever."""
    pids = tmp_path / "pids"
    script = tmp_path / "spawner.sh"
    script.write_text(
        f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}.tmp\nmv {pids}.tmp {pids}\nwait\n"
    )
    script.chmod(0o755)
    return script, pids


async def test_a_timeout_kills_the_program_and_its_children(tmp_path: Path) -> None:
    script, pids = _group_script(tmp_path)
    with pytest.raises(ProcessorError, match=r"^command timed out after 0.5s"):
        await CommandProcessor(str(script), timeout=0.5)(claimed())
    for pid in map(int, pids.read_text().split()):
        await wait_until(partial(_gone, pid), timeout=5, what=f"pid {pid} to die")


async def test_cancelling_the_task_kills_the_program_and_its_children(tmp_path: Path) -> None:
    script, pids = _group_script(tmp_path)
    running = asyncio.create_task(CommandProcessor(str(script), timeout=60)(claimed()))
    await wait_until(lambda: _exists(pids), timeout=10, what="the program to start")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for pid in map(int, pids.read_text().split()):
        await wait_until(partial(_gone, pid), timeout=5, what=f"pid {pid} to die")


async def _gone(pid: int) -> bool:
    return not process_alive(pid)


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)
