"""`gpu-reactor check`'s judgement of a LISTEN round-trip, and pooler detection."""

from __future__ import annotations

import pytest

from reactor.db.pooler import looks_like_pooler
from reactor.ops.checks import listen_verdict

DIRECT = "postgresql://postgres:pw@db.abcd.supabase.co:5432/postgres"
SESSION = "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres"
TRANSACTION = "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"


@pytest.mark.parametrize(
    ("dsn", "pooler"),
    [
        (DIRECT, False),
        (SESSION, False),
        (TRANSACTION, True),
        ("postgresql://u@pgbouncer.internal:6432/db", True),
        ("postgresql://u@localhost/db", False),
        ("not a dsn at all", False),
        ("postgresql://u@h:99999999/db", False),
    ],
)
def test_looks_like_pooler(dsn: str, pooler: bool) -> None:
    assert looks_like_pooler(dsn) is pooler


def test_a_round_trip_on_one_backend_passes() -> None:
    assert (
        listen_verdict(received=True, listener_pids={41}, sender_pids={77}, dsn=DIRECT).verdict
        == "PASS"
    )


def test_a_lost_notify_behind_a_transaction_pooler_is_named() -> None:
    result = listen_verdict(
        received=False, listener_pids={41, 42, 43}, sender_pids={77}, dsn=TRANSACTION
    )
    assert result.verdict == "FAIL"
    assert "transaction-mode pooler" in result.detail and "session-mode" in result.detail
    assert "one client connection ran on 3 server connections" in result.detail


def test_a_known_pooler_port_is_named_even_on_one_backend() -> None:
    result = listen_verdict(received=False, listener_pids={41}, sender_pids={77}, dsn=TRANSACTION)
    assert result.verdict == "FAIL" and "known transaction-mode pooler" in result.detail


def test_a_lost_notify_without_a_pooler_sign_still_fails() -> None:
    result = listen_verdict(received=False, listener_pids={41}, sender_pids={77}, dsn=SESSION)
    assert result.verdict == "FAIL" and "did not arrive" in result.detail


def test_an_arriving_notify_over_several_backends_warns() -> None:
    assert (
        listen_verdict(received=True, listener_pids={1, 2}, sender_pids={3}, dsn=DIRECT).verdict
        == "WARN"
    )


def test_two_clients_on_one_backend_is_a_pooler() -> None:
    result = listen_verdict(
        received=False,
        listener_pids={41},
        sender_pids={41},
        dsn="postgresql://u@db.internal:7432/x",
    )
    assert result.verdict == "FAIL"
    assert "two client connections shared one server connection" in result.detail
