"""What a transaction-mode pooler (pgbouncer, Supabase's Supavisor on :6543) looks like
from the client side, and what to tell the operator about it.

Such a pooler hands a server connection to a client for one transaction only, so session
state does not last: LISTEN (notifications go to whoever holds the connection next),
advisory locks (leader election) and prepared statements (asyncpg's cache collides with
another client's, or vanishes).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

# Supavisor answers in transaction mode on 6543 (session mode on 5432 of the same host is
# fine); a host named for pgbouncer is most often run in transaction mode.
POOLER_PORTS = frozenset({6543})
POOLER_HOST_MARKS = ("pgbouncer",)

POOLER_HINT = (
    "use a direct or session-mode connection string (Supabase: db.<ref>.supabase.co:5432 "
    "or the pooler's session mode on port 5432), see ops/supabase/README.md"
)
POOLER_ERROR = (
    "the database connection goes through a transaction-mode pooler (prepared "
    "statements of different clients collide): " + POOLER_HINT
)

# What asyncpg raises when its prepared statements meet a transaction-mode pooler.
POOLER_ERRORS = (asyncpg.DuplicatePreparedStatementError, asyncpg.InvalidSQLStatementNameError)


def looks_like_pooler(dsn: str) -> bool:
    """Whether the DSN's port or host is a known transaction-mode pooler."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return port in POOLER_PORTS or any(mark in host for mark in POOLER_HOST_MARKS)


def pooled(listener_pids: set[int], sender_pids: set[int]) -> str | None:
    """Why these backend pids show a pooler, or None. One client connection keeps one
    server backend, and two client connections never share one, unless a pooler hands
    server connections around between transactions."""
    if len(listener_pids) > 1:
        return f"one client connection ran on {len(listener_pids)} server connections"
    if listener_pids & sender_pids:
        return "two client connections shared one server connection"
    return None
