"""One line for a setting that does not validate, naming it by its environment name and
never quoting its value (it may be a secret)."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError

INVALID_DSN = "invalid_dsn"  # error type of a DSN setting that asyncpg could not use


def describe_validation_error(exc: ValidationError, fields: dict[str, FieldInfo]) -> str:
    """One line naming the first bad setting by its environment name."""
    aliases = {name: (f.alias or name.upper()) for name, f in fields.items()}
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    name = aliases.get(str(loc[0]), str(loc[0])) if loc else ""
    message = err.get("msg", "invalid").removeprefix("Value error, ")
    if name and err.get("type") == INVALID_DSN:  # worded as reactor/db/connect.py does
        return f"{name} is not a valid DSN: {message}"
    if name:
        return f"invalid setting {name}: {message}"
    return f"invalid settings: {message}"


def describe_settings_error(exc: SettingsError, fields: dict[str, FieldInfo]) -> str:
    """One line for a value pydantic-settings could not even decode (a JSON setting
    that is not JSON), naming the setting; the value is never quoted."""
    match = re.search(r'field "(\w+)"', str(exc))
    field = fields.get(match.group(1)) if match else None
    if match is None or field is None:
        return "invalid settings: a value could not be decoded (a JSON setting is not JSON?)"
    name = field.alias or match.group(1).upper()
    return f"invalid setting {name}: not valid JSON"
