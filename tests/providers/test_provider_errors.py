"""A provider error is one printable line whatever the provider answered: it reaches
terminals, logs and workers.error_reason, where Postgres refuses a NUL."""

from __future__ import annotations

import pytest

from reactor.errors import CapacityError, ProviderError, RateLimited, one_line
from reactor.providers.runpod_http import Reply, RunpodHttp


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("no capacity\x00\r\n", "no capacity"),
        (
            "<html>\n<head>\t<title>403</title>\n</html>\n",
            "<html> <head> <title>403</title> </html>",
        ),
        ("a\x1b[31mred\x1b[0m", "a [31mred [0m"),
        ("right\u202eto left\u200b\ufeff", "right to left"),
        ("line\u2028sep\x85next", "line sep next"),
        ("caf\u00e9 \U0001f680", "caf\u00e9 \U0001f680"),
        ("", ""),
    ],
)
def test_one_line(text: str, line: str) -> None:
    assert one_line(text) == line


def test_one_line_cuts_long_text_and_says_so() -> None:
    cut = one_line("x" * 500, 200)
    assert len(cut) == 200 and cut.endswith("...")
    assert one_line("x" * 200, 200) == "x" * 200
    assert len(one_line("\x00 " * 100_000 + "y" * 5000, 100)) <= 100


@pytest.mark.parametrize("cls", [ProviderError, CapacityError])
def test_a_provider_error_message_is_made_one_printable_line(cls: type[ProviderError]) -> None:
    err = cls("refused:\x00 <html>\n</html>", status=400, request_id="r1")
    assert str(err) == "refused: <html> </html>" and str(err).isprintable()
    assert err.status == 400 and err.request_id == "r1"
    limited = RateLimited("slow\ndown", retry_after=3.0, status=429)
    assert str(limited) == "slow down" and limited.retry_after == 3.0


def test_a_reply_detail_and_errors_are_one_printable_line() -> None:
    reply = Reply(
        400,
        {"detail": "no\u0000 capacity\n" + "z" * 1000, "errors": ["bad\r\nfield", {"x": "\u0000"}]},
        None,
    )
    detail = reply.detail()
    assert detail.startswith("no capacity zzz") and detail.isprintable()
    assert len(detail) <= 200
    assert all(e.isprintable() for e in reply.errors())
    assert Reply(400, {"detail": "\x00\n", "title": "Bad Request"}, None).detail() == "Bad Request"


def test_scrub_drops_the_key_and_keeps_one_line() -> None:
    http = RunpodHttp(base_url="http://127.0.0.1:1", api_key="rpa_SECRETKEY", timeout_sec=1)
    text = http.scrub("key rpa_SECRETKEY\x00 echoed\n" + "w" * 1000)
    assert "rpa_SECRETKEY" not in text and text.isprintable() and len(text) <= 300
    assert text.startswith("key ********** echoed www")
