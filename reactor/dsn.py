"""What a DSN setting may hold: a Postgres URL that asyncpg can use.

Checked when the settings load, so a bad DATABASE_URL stops start-up with one line that
never quotes the DSN (it holds a password).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

_IPV6_HOST = re.compile(r"^\[[^\]]+\](?::(.*))?$")


def dsn_problem(dsn: str) -> str | None:
    """What makes ``dsn`` unusable as a Postgres URL (as asyncpg reads it), or None.
    The answer never quotes the DSN, which holds a password."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return (
            "not a readable URL (in the user name or password, percent-encode "
            "'@', ':', '/', '?', '#', '[' and ']')"
        )
    if parts.scheme not in ("postgresql", "postgres"):
        return "not a URL starting with postgresql:// or postgres://"
    try:
        query = parse_qsl(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        return "its query string is not name=value pairs joined by '&'"
    ports = [value for key, value in query if key == "port"]
    # asyncpg reads the host list after the first '@' of the network location.
    hostlist = parts.netloc.partition("@")[2] if "@" in parts.netloc else parts.netloc
    if "@" in hostlist:
        return "an '@' in the user name or password must be percent-encoded (%40)"
    if hostlist:
        for host in hostlist.split(","):
            problem = _host_problem(host)
            if problem:
                return problem
    for value in ports:
        if not all(_port_ok(p) for p in value.split(",")):
            return "the port query parameter is not a number from 1 to 65535"
    return None


def _host_problem(host: str) -> str | None:
    if not host:
        return "an empty host in the host list"
    if host.startswith("/"):  # a Unix socket directory
        return None
    if host.startswith("["):
        match = _IPV6_HOST.match(host)
        if match is None:
            return "an unreadable IPv6 host (expected [address] or [address]:port)"
        port = match.group(1)
    else:
        port = host.partition(":")[2]
    if port and not _port_ok(unquote(port)):
        return "the port is not a number from 1 to 65535"
    return None


def _port_ok(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def dsn_password(dsn: str) -> str | None:
    """The password in ``dsn``, if it has one (to scrub it from output)."""
    try:
        return urlsplit(dsn).password
    except ValueError:
        return None
