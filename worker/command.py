"""The ``command`` processor: any program as a task processor (Headless-Wan2GP, a script).

Contract with the program: the task's params arrive as JSON on stdin; the result is the
JSON it prints on stdout (the whole output, or failing that its last non-empty line, so
progress lines before the result are tolerated); exit status 0 means success. Its stderr
is passed through to the worker's stderr (the pod's log) and its tail quoted in the
task's error_message on failure. The program runs in its own process group, killed
whole (SIGTERM, then SIGKILL) on timeout or stop, and dies with the worker (Linux).
Environment: the worker's, without DATABASE_URL, plus GPU_REACTOR_TASK_ID,
GPU_REACTOR_TASK_TYPE and GPU_REACTOR_TASK_ATTEMPT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson

from worker.db import ClaimedTask
from worker.errors import ProcessorError

KILL_AFTER_SEC = 5.0  # between SIGTERM and SIGKILL of the process group
DRAIN_SEC = 5.0  # reading what is left in the pipes once the program has exited
MAX_STDOUT = 64 * 1024 * 1024
STDERR_TAIL = 2000
HIDDEN_ENV = ("DATABASE_URL", "WORKER_TOKEN")


def _pdeathsig() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when the worker dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG

    return hook


_PREEXEC = _pdeathsig()


def parse_output(stdout: bytes) -> Any:
    """The program's result: all of stdout as JSON, else its last non-empty line."""
    text = stdout.strip()
    if not text:
        raise ValueError("printed nothing on stdout")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as whole:
        last = text.rsplit(b"\n", 1)[-1].strip()
        if last != text:
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(last)
        raise ValueError(f"stdout is not JSON ({whole}); it began {text[:120]!r}") from None


def _signal_name(returncode: int) -> str:
    with contextlib.suppress(ValueError):
        return f"killed by {signal.Signals(-returncode).name}"
    return f"killed by signal {-returncode}"


class _Output:
    def __init__(self) -> None:
        self.stdout = bytearray()
        self.too_large = False
        self.stderr_tail = b""

    async def read_stdout(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            if len(self.stdout) + len(chunk) > MAX_STDOUT:
                self.too_large = True
                continue
            self.stdout += chunk

    async def read_stderr(self, stream: asyncio.StreamReader) -> None:
        out = getattr(sys.stderr, "buffer", None)
        while chunk := await stream.read(65536):
            self.stderr_tail = (self.stderr_tail + chunk)[-STDERR_TAIL:]
            if out is not None:
                with contextlib.suppress(OSError, ValueError):
                    out.write(chunk)
                    out.flush()

    def tail(self) -> str:
        text = self.stderr_tail.decode(errors="replace").strip()
        return f"; stderr tail:\n{text}" if text else "; stderr was empty"


class CommandProcessor:
    name = "command"

    def __init__(self, command_line: str, *, timeout: float) -> None:
        self.argv = shlex.split(command_line)
        self.timeout = timeout
        # The runner's own timeout is a backstop: leave room to kill and report.
        self.timeout_slack = KILL_AFTER_SEC + 2

    def _env(self, task: ClaimedTask) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
        env.update(
            GPU_REACTOR_TASK_ID=str(task.id),
            GPU_REACTOR_TASK_TYPE=task.task_type,
            GPU_REACTOR_TASK_ATTEMPT=str(task.attempt),
        )
        return env

    async def __call__(self, task: ClaimedTask) -> Any:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(task),
                start_new_session=True,
                preexec_fn=_PREEXEC,
            )
        except OSError as exc:
            raise ProcessorError(f"cannot start command {self.argv[0]!r}: {exc}") from exc
        output = _Output()
        io = asyncio.gather(
            self._feed(proc, task.params),
            output.read_stdout(proc.stdout),  # type: ignore[arg-type]
            output.read_stderr(proc.stderr),  # type: ignore[arg-type]
        )
        io.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            async with asyncio.timeout(self.timeout):
                await proc.wait()
            # A leftover grandchild may hold the pipes open: drain briefly, no more.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SEC):
                    await asyncio.shield(io)
        except TimeoutError:
            await asyncio.shield(_stop(proc))
            raise ProcessorError(
                f"command timed out after {self.timeout:g}s (TASK_TIMEOUT_SEC){output.tail()}"
            ) from None
        finally:
            if proc.returncode is None:  # cancelled: the worker is stopping
                await asyncio.shield(_stop(proc))
            io.cancel()
            _kill_group(proc.pid)  # whatever the program left behind in its group
        return self._result(proc.returncode, output)

    @staticmethod
    async def _feed(proc: asyncio.subprocess.Process, params: Any) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(orjson.dumps(params))
            await proc.stdin.drain()
            proc.stdin.close()

    @staticmethod
    def _result(returncode: int | None, output: _Output) -> Any:
        if returncode:
            status = (
                f"exited with status {returncode}" if returncode > 0 else _signal_name(returncode)
            )
            raise ProcessorError(f"command {status}{output.tail()}")
        if output.too_large:
            raise ProcessorError(f"command printed more than {MAX_STDOUT} bytes on stdout")
        try:
            return parse_output(bytes(output.stdout))
        except ValueError as exc:
            raise ProcessorError(
                f"command output is not a JSON result: {exc}{output.tail()}"
            ) from None


def _kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the program's process group, SIGKILL it if it lingers, reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        _kill_group(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_AFTER_SEC):
                await proc.wait()
