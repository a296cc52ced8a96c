"""The worker's errors: one root, temporary and permanent kept apart."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """The environment is invalid; the message names the variable. Exit code 2."""


class StartupError(WorkerError):
    """The worker cannot start (database unreachable, schema missing). Exit code 1."""


class DatabaseUnavailable(WorkerError):
    """A connection was lost or could not be opened: temporary, retry with backoff."""


class ProcessorError(WorkerError):
    """A processor failed a task; the message becomes the task's error_message."""
