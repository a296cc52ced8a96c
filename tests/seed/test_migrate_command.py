"""`gpu-reactor migrate --plan`, `migrate` and `uninstall` as an operator runs them on the
seed's database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from reactor.cli import main
from reactor.settings import Settings


def _has_schema(dsn: str) -> bool:
    async def ask() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT to_regnamespace('gpu_reactor') IS NOT NULL"))
        finally:
            await conn.close()

    return asyncio.run(ask())


@pytest.fixture
def gpu_reactor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], seed_dsn: str, tmp_path
):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for name, field in Settings.model_fields.items():
        monkeypatch.delenv(field.alias or name.upper(), raising=False)
    monkeypatch.setenv("DATABASE_URL", seed_dsn)

    def call(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    return call


def test_the_plan_shows_every_statement_and_changes_nothing(gpu_reactor, seed_dsn: str) -> None:  # type: ignore[no-untyped-def]
    code, out = gpu_reactor("migrate", "--plan")
    assert code == 0
    assert "this database is fresh; nothing was changed" in out
    assert "CREATE SCHEMA IF NOT EXISTS gpu_reactor;" in out
    assert "-- schema.sql, outside a transaction" in out
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS gpu_reactor_tasks_claim_idx" in out
    assert not _has_schema(seed_dsn)


def test_migrate_names_what_it_changes_outside_its_schema(gpu_reactor, seed_dsn: str) -> None:  # type: ignore[no-untyped-def]
    code, out = gpu_reactor("migrate")
    assert code == 0
    assert "gpu-reactor: widening public.workers.workers_status_check to admit" in out
    assert "gpu-reactor: giving public.workers.instance_type the default 'gpu-reactor'" in out
    assert "applied: schema.sql" in out
    code, out = gpu_reactor("uninstall")
    assert code == 0 and "would run (nothing changed; --yes runs it)" in out
    assert "DROP SCHEMA gpu_reactor CASCADE;" in out and _has_schema(seed_dsn)
    code, out = gpu_reactor("uninstall", "--yes")
    assert code == 0 and not _has_schema(seed_dsn)
