"""--params of 'gpu-reactor tasks create': validated, then stored as given."""

from __future__ import annotations

import pytest

from reactor.ops.manual import BadInput, parse_params


@pytest.mark.parametrize(
    "text",
    [
        '{"seed": 123456789012345678901234567890}',
        '{"tiny": 1e-400, "huge": 1e400, "exact": 0.10000000000000000000001}',
        ' {"spaced" : [1, 2, {"a": null}]} ',
        '{"digits": ' + "9" * 5000 + "}",
        "{}",
    ],
)
def test_valid_params_are_returned_verbatim(text: str) -> None:
    assert parse_params(text) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not valid JSON"),
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": Infinity}', "Infinity is not JSON"),
        ('{"a": -Infinity}', "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ],
)
def test_invalid_params_are_refused(text: str, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        parse_params(text)
