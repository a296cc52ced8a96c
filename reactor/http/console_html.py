"""HTML pieces of the console's server-rendered pages; every value escaped by ``e()``."""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

LOGOUT_FORM = (
    '<form method="post" action="/logout" class="logout"><button type="submit">'
    "Sign out</button></form>"
)


def e(value: Any) -> str:
    """A value as escaped text ('-' for nothing)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return html.escape(str(value), quote=True)


def worker_link(worker_id: str | None) -> str:
    if not worker_id:
        return "-"
    return f'<a href="/workers/{quote(worker_id, safe="")}">{e(worker_id)}</a>'


def task_link(task_id: str | None) -> str:
    if not task_id:
        return "-"
    return f'<a href="/tasks/{quote(task_id, safe="")}" class="mono">{e(task_id)}</a>'


def facts_html(facts: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are already-escaped HTML."""
    rows = "".join(f"<dt>{e(name)}</dt><dd>{value}</dd>" for name, value in facts)
    return f'<dl class="facts">{rows}</dl>'


def table_html(caption: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    """A table in a scrollable, focusable region; cells are already-escaped HTML."""
    if not rows:
        return f"<h2>{e(caption)}</h2><p class='empty'>{e(empty)}</p>"
    th = "".join(f'<th scope="col">{e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<h2>{e(caption)}</h2>"
        f'<div class="scroll" role="region" aria-label="{e(caption)}" tabindex="0">'
        f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def page_html(title: str, heading: str, body: str, *, signed_in: bool) -> str:
    logout = LOGOUT_FORM if signed_in else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title>"
        '<link rel="stylesheet" href="/static/console.css"></head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header class="top"><nav aria-label="console"><a href="/">&larr; fleet</a> '
        '<a href="/status">/status</a> <a href="/metrics">/metrics</a></nav>'
        f"{logout}</header>"
        f'<main id="main" class="detail"><h1>{heading}</h1>{body}</main></body></html>'
    )
