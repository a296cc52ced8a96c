"""Named queries loaded from sql/queries.sql (``-- name: xyz`` headers)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def load_queries() -> dict[str, str]:
    text = resources.files("reactor.sql").joinpath("queries.sql").read_text()
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} defined twice in queries.sql")
        queries[name] = body.strip().rstrip(";")
    return queries


def query(name: str) -> str:
    try:
        return load_queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
