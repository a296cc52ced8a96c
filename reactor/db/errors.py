"""The driver errors that mean "the database did not answer this time", named once.

Anything that talks to Postgres catches these, and only these, as transient: a statement
that failed or a connection that broke is retried later; anything else is a bug and
surfaces. ``CONNECTION_ERRORS`` is the subset that says the connection itself is gone, so
pooled connections may be half-open too and are better replaced.
"""

from __future__ import annotations

import asyncpg

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
)
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)
