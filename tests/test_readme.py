"""The README stays the truth: its two commands, every setting, the CI command."""

from __future__ import annotations

from pathlib import Path

from reactor.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_lists_every_reactor_setting() -> None:
    missing = [f.alias for f in Settings.model_fields.values() if f"`{f.alias}`" not in README]
    assert missing == [], f"README.md does not document {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make test" in README
