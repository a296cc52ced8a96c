"""The console's credentials and headers (reactor/http/auth.py)."""

from __future__ import annotations

import pytest

from reactor.http.auth import CONTENT_SECURITY_POLICY, safe_next, session_value


@pytest.mark.parametrize(
    "target",
    [None, "", "//evil.example", "https://evil.example/", "evil", "/\\evil.example", "http:/x"],
)
def test_after_the_login_only_a_path_on_this_server(target: str | None) -> None:
    assert safe_next(target) == "/"


def test_a_path_is_kept() -> None:
    assert safe_next("/workers/gpu-reactor-1?x=1") == "/workers/gpu-reactor-1?x=1"


def test_the_cookie_is_no_copy_of_the_token_and_changes_with_it() -> None:
    assert "s3cret" not in session_value("s3cret")
    assert session_value("s3cret") != session_value("s3cret2")


def test_the_policy_forbids_inline_and_foreign_code() -> None:
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
