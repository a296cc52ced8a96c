"""Every setting out of range: ``gpu-reactor once`` must refuse to start with one line on
stderr that names the variable, a non-zero exit and no traceback.

The cases are derived from the Settings model (each numeric bound crossed, not-a-number,
infinity, absurd magnitudes, a value outside each choice) plus malformed structured values.
All run as real processes against a real database and the fake Runpod, so a value that
slips through validation shows what it does at run time. They run concurrently once per
module; each case is then reported as its own test.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import annotated_types
import pytest

from reactor.settings import Settings
from tests.fakes.runpod_v2 import run_fake_runpod
from tests.faults.reactors import clean_environ
from tests.pg import WORKER_LOGIN, WORKER_PASSWORD, PgServer

PARALLEL = 4
UNBOUNDED_ABOVE = ["inf", "1e300"]  # no sane timeout, price or budget is infinite


def _bound(field: Any, kind: type) -> Any:
    for meta in field.metadata:
        if isinstance(meta, kind):
            return meta
    return None


def _numeric_cases(name: str, field: Any) -> list[str]:
    is_int = field.annotation is int
    cases = ["abc"] if is_int else []
    low = _bound(field, annotated_types.Ge) or _bound(field, annotated_types.Gt)
    if isinstance(low, annotated_types.Ge):
        cases.append(str(low.ge - 1))
    elif isinstance(low, annotated_types.Gt):
        cases.append(str(low.gt))
    high = _bound(field, annotated_types.Le)
    if high is not None:
        cases.append(str(high.le + 1))
    if not is_int:
        cases += ["nan", *UNBOUNDED_ABOVE]
    return cases


def _cases() -> list[tuple[str, str]]:
    found = []
    for name, field in Settings.model_fields.items():
        alias = field.alias or name.upper()
        annotation = field.annotation
        if annotation in (int, float) or str(annotation) == "float | None":
            found += [(alias, value) for value in _numeric_cases(name, field)]
        elif getattr(annotation, "__origin__", None) is not None and "Literal" in str(annotation):
            found.append((alias, "bogus"))
    found += [
        ("REACTOR_FLEET", "Bad Fleet!"),
        ("REACTOR_FLEET", "x"),
        ("WORKER_EXTRA_ENV", "{"),
        ("WORKER_EXTRA_ENV", "[1, 2]"),
        ("WORKER_EXTRA_ENV", '{"A": {"nested": 1}}'),
        ("WORKER_EXTRA_ENV", '{"NOT A NAME": "x"}'),
        ("WORKER_EXTRA_ENV", '{"A": "nul \\u0000"}'),
        ("MIN_ACTIVE_GPUS", "5"),  # above MAX_ACTIVE_GPUS=2
        ("GPU_HOURLY_PRICE_USD", "1e-300"),  # any budget would "afford" ~infinity
        ("DATABASE_URL", "postgresql://u:pw@127.0.0.1:notaport/x"),
        ("DATABASE_URL", "postgresql://u:pw@127.0.0.1:99999/x"),
        ("DATABASE_URL", "postgresql://u:p@ss@127.0.0.1/x"),
        ("DATABASE_URL", "postgresql://u:pw@127.0.0.1/x?sslmode"),
        ("DATABASE_URL", "not a url"),
        ("WORKER_DATABASE_URL", "postgresql://u:pw@127.0.0.1:notaport/x"),
        ("WORKER_DATABASE_URL", "mysql://u:pw@127.0.0.1/x"),
    ]
    return found


CASES = _cases()

# Values the reactor accepts today, or rejects without naming, with what happens instead
# (each becomes a strict xfail).
KNOWN: dict[tuple[str, str], str] = {}


async def _run_case(
    sem: asyncio.Semaphore, env: dict[str, str], name: str, value: str
) -> tuple[int, str, str]:
    async with sem:
        with tempfile.TemporaryDirectory() as cwd:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reactor",
                "once",
                env={**env, name: value},
                cwd=cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _run_all(dsn: str, worker_dsn: str) -> dict[tuple[str, str], tuple[int, str, str]]:
    async with run_fake_runpod() as runpod:
        env = {
            **clean_environ(),
            "DATABASE_URL": dsn,
            "WORKER_DATABASE_URL": worker_dsn,
            "RUNPOD_API_URL": runpod.url,
            "RUNPOD_API_KEY": runpod.api_key,
            "RUNPOD_GPU_TYPES": "NVIDIA L4",
            "LOG_LEVEL": "ERROR",
            "LOG_FORMAT": "json",
            "RUNPOD_REQUEST_TIMEOUT_SEC": "5",
        }
        sem = asyncio.Semaphore(PARALLEL)
        # A fleet per case: every accepted value gets the leader lock of its own.
        results = await asyncio.gather(
            *(
                _run_case(sem, {**env, "REACTOR_FLEET": f"bad-settings-{i}"}, n, v)
                for i, (n, v) in enumerate(CASES)
            )
        )
    return dict(zip(CASES, results, strict=True))


@pytest.fixture(scope="module")
def outcomes(pg_server: PgServer) -> Iterator[dict[tuple[str, str], tuple[int, str, str]]]:
    name = asyncio.run(pg_server.create_database())
    try:
        yield asyncio.run(
            _run_all(
                pg_server.dsn(name),
                pg_server.dsn(name, user=WORKER_LOGIN, password=WORKER_PASSWORD),
            )
        )
    finally:
        asyncio.run(pg_server.drop_database(name))


def _params() -> list[Any]:
    return [
        pytest.param(
            name,
            value,
            id=f"{name}={value[:20]}",
            marks=[pytest.mark.xfail(strict=True, reason=f"BUG: {KNOWN[(name, value)]}")]
            if (name, value) in KNOWN
            else [],
        )
        for name, value in CASES
    ]


@pytest.mark.parametrize(("name", "value"), _params())
def test_an_out_of_range_setting_is_one_line_naming_it(
    outcomes: dict[tuple[str, str], tuple[int, str, str]], name: str, value: str
) -> None:
    code, out, err = outcomes[(name, value)]
    lines = err.strip().splitlines()
    assert code != 0, f"{name}={value!r} was accepted (exit 0): {out[:300]}"
    assert "Traceback" not in err, err[-1500:]
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-1500:]}"
    assert name in lines[0], f"the error does not name {name}: {lines[0]}"
    assert lines[0].startswith("gpu-reactor: ")
