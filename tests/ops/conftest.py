"""Run `gpu-reactor ...` in-process with a clean environment and capture what it prints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reactor.cli import main
from reactor.settings import Settings
from tests.pg import with_database


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


Cli = Callable[..., Result]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """``cli("workers", "list", DATABASE_URL=...)``: exit code, stdout, stderr.

    Safe to call from a worker thread (``asyncio.to_thread``) while a test's event loop
    serves a fake provider: main() runs its own loop."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, field in Settings.model_fields.items():
        monkeypatch.delenv(field.alias or name.upper(), raising=False)
    monkeypatch.setenv("LOG_FORMAT", "text")

    def run(*argv: str, **env: object) -> Result:
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, str(value))
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def dsn_with_secret(db_dsn: str) -> tuple[str, str]:
    """A DSN of the test database that carries a password, and that password.

    The embedded server trusts local logins, so any password is accepted (and ignored)."""
    parts = urlsplit(db_dsn)
    if parts.password:
        return db_dsn, parts.password
    secret = "db-pass-5e1f7c"
    return with_database(
        db_dsn, parts.path.lstrip("/"), user=parts.username or "postgres", password=secret
    ), secret
