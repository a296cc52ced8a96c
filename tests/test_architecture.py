"""The architecture's rules that import-linter cannot see, and the contracts it checks.

The domain (reactor/domain) decides: it takes ``now`` as an argument and never reads a
clock, sleeps or opens anything, so the simulator and the tests can drive it on any time.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "reactor" / "domain"

# Calls that read a clock or the outside world. Matched on the attribute's name, so an
# alias (``from datetime import datetime as dt; dt.now()``) is caught as well.
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "sleep"}
IO_CALLS = {"open", "getenv", "environ", "urandom", "random", "uniform"}


def _calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCK_READS | IO_CALLS:
                found.append((node.lineno, name))
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append((node.lineno, "environ"))
    return found


def domain_violations(root: Path = DOMAIN) -> list[str]:
    out = []
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        out += [f"{path.name}:{line}: {name}()" for line, name in _calls(tree)]
    return out


def test_the_domain_reads_no_clock_and_touches_nothing_outside() -> None:
    assert domain_violations() == []


def test_the_check_finds_a_clock_read(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from datetime import datetime as dt\nimport random\n"
        "def f():\n    return dt.now(), random.uniform(0, 1)\n"
    )
    assert domain_violations(tmp_path) == ["bad.py:4: now()", "bad.py:4: uniform()"]


@pytest.mark.skipif(
    shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
    reason="import-linter not installed (pip install -e '.[dev]')",
)
def test_the_import_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
