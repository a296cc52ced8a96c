"""Render .env.example from the Settings class, so it lists every setting.

    python -m reactor.envfile > .env.example

tests/ops/test_envfile.py fails when the checked-in file and this rendering differ.
"""

from __future__ import annotations

import textwrap
from typing import Any

import orjson
from pydantic import SecretStr

from reactor.settings import Settings

HEADER = """\
# gpu-reactor settings: copy to .env (read from the working directory) or set them in the
# environment. Generated from reactor/settings.py by `python -m reactor.envfile`; edit
# the descriptions there, not here. Lines starting with '#NAME=' are unset by default.
"""

# Placeholders where the default (empty) would not show what a value looks like.
EXAMPLES: dict[str, str] = {
    "DATABASE_URL": "postgresql://gpu_reactor:change-me@db.example.com:5432/postgres",
    "WORKER_DATABASE_URL": "postgresql://pod_login:change-me@db.example.com:5432/postgres",
    "RUNPOD_API_KEY": "rpa_change-me",
    "RUNPOD_GPU_TYPES": "NVIDIA GeForce RTX 4090,NVIDIA RTX A5000",
    "REACTOR_HTTP_TOKEN": "change-me",
}
COMMENTED = {"WORKER_DATABASE_URL", "RUNPOD_API_KEY", "REACTOR_HTTP_TOKEN"}


def _value(default: Any) -> str:
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    if isinstance(default, dict):
        return orjson.dumps(default).decode()
    return "" if default is None else str(default)


def render() -> str:
    lines = [HEADER]
    # The reactor's own settings first, in their order; the inherited RUNPOD_* ones last.
    fields = sorted(Settings.model_fields.items(), key=lambda item: item[0].startswith("runpod_"))
    for name, field in fields:
        env = field.alias or name.upper()
        default = field.get_default(call_default_factory=True)
        for line in textwrap.wrap(field.description or "", 88):
            lines.append(f"# {line}")
        value = EXAMPLES.get(env, _value(default))
        unset = default is None or env in COMMENTED
        lines.append(f"{'#' if unset else ''}{env}={value}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
