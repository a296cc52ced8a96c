"""Connecting with errors a person can read."""

from __future__ import annotations

import asyncpg

from reactor.errors import ConfigError, DatabaseError
from reactor.logs import scrub


async def connect(dsn: str, *, timeout: float = 10) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidPasswordError) as exc:
        raise DatabaseError(f"database refused the login: {scrub(str(exc))}") from None
    except asyncpg.InvalidCatalogNameError as exc:
        raise DatabaseError(f"database does not exist: {scrub(str(exc))}") from None
    except (ValueError, asyncpg.ClientConfigurationError) as exc:
        raise ConfigError(f"DATABASE_URL is not a valid DSN: {scrub(str(exc))}") from None
    except (OSError, TimeoutError) as exc:
        raise DatabaseError(
            f"cannot reach the database: {scrub(str(exc)) or type(exc).__name__}"
        ) from None
