"""Per-pod worker tokens are scrubbed wherever they appear, without being registered."""

from __future__ import annotations

import logging

import orjson

from reactor.logs import WORKER_TOKEN_PREFIX, JsonFormatter, scrub


def test_a_worker_token_is_scrubbed_from_any_text() -> None:
    token = WORKER_TOKEN_PREFIX + "Zx9_-" * 9
    body = orjson.dumps({"env": {"WORKER_TOKEN": token, "WORKER_ID": "gpu-reactor-1"}}).decode()
    out = scrub(f"runpod said: {body} (again: {token})")
    assert token not in out and token[:12] not in out
    assert "gpu-reactor-1" in out and out.count("**********") == 2
    assert scrub("gpw_short and gpw_") == "gpw_short and gpw_"  # not token-shaped: kept


def test_a_token_in_a_log_record_is_scrubbed() -> None:
    token = WORKER_TOKEN_PREFIX + "a" * 43
    record = logging.makeLogRecord(
        {
            "msg": "create_failed",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "detail": f"env={{'T': '{token}'}}",
        }
    )
    assert token not in JsonFormatter().format(record)
