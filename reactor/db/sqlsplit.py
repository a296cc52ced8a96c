"""Split a SQL script into its statements, for ``migrate --plan`` and for the part of a
migration that must run one statement at a time (CREATE INDEX CONCURRENTLY).

Knows what can hide a semicolon: ``--`` and ``/* */`` comments, quoted strings and
identifiers, and dollar-quoted bodies. Comments before a statement stay with it (they
say why it is there); a script's trailing comments are dropped.
"""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(script: str) -> list[str]:
    statements: list[str] = []
    start = 0
    i = 0
    n = len(script)
    while i < n:
        ch = script[i]
        if script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end + 1
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in ("'", '"'):
            i = _skip_quoted(script, i, ch)
        elif ch == "$" and (match := _DOLLAR_TAG.match(script, i)):
            end = script.find(match.group(0), match.end())
            i = n if end < 0 else end + len(match.group(0))
        elif ch == ";":
            _keep(statements, script[start : i + 1])
            start = i = i + 1
        else:
            i += 1
    _keep(statements, script[start:])
    return statements


def _skip_quoted(script: str, i: int, quote: str) -> int:
    i += 1
    while i < len(script):
        if script[i] == quote:
            if script.startswith(quote * 2, i):  # '' or "" inside
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _keep(statements: list[str], text: str) -> None:
    text = text.strip()
    if any(line.strip() and not line.strip().startswith("--") for line in text.splitlines()):
        statements.append(text)
