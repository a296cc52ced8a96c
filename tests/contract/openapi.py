"""Runpod's REST v2 OpenAPI document (runpod-v2-openapi.json, see README.md) as a validator.

    doc = runpod_v2()
    doc.request_errors("POST", "/pods", query={}, body={...})       # [] when it conforms
    doc.response_errors("GET", "/pods/abc", 200, "application/json", {...})

Paths are relative to /v2, as the fake server records them. The document is OpenAPI
3.1, whose schemas are JSON Schema 2020-12: ``$ref``s are resolved against the whole
document through a ``referencing`` registry, ``nullable`` is spelled as a type list or an
``anyOf`` with ``null`` (nothing to translate), and ``date-time`` formats are checked. The
OpenAPI objects around the schemas (responses, parameters) are resolved here.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT = Path(__file__).with_name("runpod-v2-openapi.json")
BASE_URI = "urn:runpod:openapi:v2"
PREFIX = "/v2"

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-time: a date, 'T', a time and an offset (or Z)."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # e.g. /v2/pods/{id}
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))

    @property
    def query_parameters(self) -> frozenset[str]:
        return frozenset(p["name"] for p in self.parameters if p.get("in") == "query")


class OpenApi:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(BASE_URI, resource)
        self._routes = [
            (re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(t)) + "$"), t)
            for t in document["paths"]
        ]

    # --- the document's objects --------------------------------------------------------------
    def resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An OpenAPI object with its ``$ref`` (to this document) followed."""
        while "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj

    def operation(self, method: str, path: str) -> Operation | None:
        """The documented operation of ``method path`` (path relative to /v2), or None."""
        full = PREFIX + path
        for pattern, template in self._routes:
            if not pattern.match(full):
                continue
            item = self.document["paths"][template]
            spec = item.get(method.lower())
            if spec is None:
                return None
            shared = [self.resolve(p) for p in item.get("parameters", [])]
            own = [self.resolve(p) for p in spec.get("parameters", [])]
            return Operation(method.upper(), template, spec, tuple(shared + own))
        return None

    def declares_status(self, operation: Operation, status: int) -> bool:
        """Whether ``operation`` documents ``status``: by its own key, or, under
        ``default``, a 5xx or a status its description names (createPod's 402)."""
        responses = operation.spec.get("responses", {})
        if str(status) in responses:
            return True
        if "default" not in responses:
            return False
        return status >= 500 or f"`{status}`" in operation.spec.get("description", "")

    # --- validation ----------------------------------------------------------------------
    def schema_errors(self, instance: Any, pointer: str) -> list[str]:
        """Every way ``instance`` breaks the schema at ``pointer`` ('#/components/...')."""
        validator = _validator(self, pointer)
        return sorted(
            f"{error.json_path}: {error.message}" for error in validator.iter_errors(instance)
        )

    def request_errors(
        self, method: str, path: str, *, query: dict[str, str], body: Any
    ) -> list[str]:
        """What a request sends that the document does not declare or its schema refuses."""
        return self.query_errors(method, path, query) + self.body_errors(method, path, body)

    def query_errors(self, method: str, path: str, query: dict[str, str]) -> list[str]:
        """The query parameters the operation does not declare (Runpod ignores them)."""
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {PREFIX}{path}: no such operation in the document"]
        return [
            f"{operation.id}: query parameter {name!r} is not declared"
            for name in sorted(set(query) - operation.query_parameters)
        ]

    def body_errors(self, method: str, path: str, body: Any) -> list[str]:
        """Every way ``body`` breaks the operation's request schema (Runpod: 422)."""
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {PREFIX}{path}: no such operation in the document"]
        request = operation.spec.get("requestBody")
        if request is None:
            return [] if body is None else [f"{operation.id}: takes no request body"]
        media = self.resolve(request)["content"].get("application/json")
        if body is None:
            return [f"{operation.id}: the request body is required"]
        return [] if media is None else self._errors_of(media, body)

    def response_errors(
        self, method: str, path: str, status: int, content_type: str | None, body: Any
    ) -> list[str]:
        """What an answer does that the document does not say this operation answers."""
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {PREFIX}{path}: no such operation in the document"]
        if not self.declares_status(operation, status):
            return [f"{operation.id}: status {status} is not documented for this operation"]
        responses = operation.spec["responses"]
        response = self.resolve(responses.get(str(status)) or responses["default"])
        content = response.get("content")
        if not content:
            return [] if body is None else [f"{operation.id} {status}: must have no body"]
        media = content.get(content_type or "")
        if media is None:
            return [
                f"{operation.id} {status}: content type {content_type!r} not in {list(content)}"
            ]
        return [f"{operation.id} {status} {e}" for e in self._errors_of(media, body)]

    def _errors_of(self, media: dict[str, Any], body: Any) -> list[str]:
        schema = media.get("schema")
        if schema is None:
            return []
        # Every schema of the operations used here is a $ref to components/schemas.
        assert set(schema) == {"$ref"}, f"an inline schema: {schema}"
        return self.schema_errors(body, schema["$ref"])


@functools.cache
def _validator(doc: OpenApi, pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": BASE_URI + pointer}, registry=doc._registry, format_checker=FORMATS
    )


@functools.cache
def runpod_v2() -> OpenApi:
    """The vendored document, loaded once."""
    return OpenApi(json.loads(DOCUMENT.read_text()))
