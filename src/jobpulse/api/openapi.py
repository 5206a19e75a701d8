"""The OpenAPI document, completed from the kind registry: the submission bodies name this deployment's
kinds, and each JSON kind's input and options schema (FastAPI cannot know them: the routes read the
body themselves, bounded)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from jobpulse.kinds import JsonInput, KindRegistry, Upload

__all__ = ["document_kinds"]


def _json_body(kinds: KindRegistry) -> dict[str, Any]:
    """``POST /jobs/``'s JSON body: one variant per kind whose input is not an upload."""
    variants = []
    for kind in kinds:
        if kind.resource != "jobs" or isinstance(kind.input, Upload):
            continue
        properties: dict[str, Any] = {"kind": {"type": "string", "const": kind.name}}
        required = ["kind"]
        if isinstance(kind.input, JsonInput):
            properties["input"] = kind.input.model.model_json_schema()
            required.append("input")
        if kind.options is not None:
            properties["options"] = kind.options.model_json_schema()
        variants.append(
            {
                "title": kind.name,
                "description": kind.description,
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            }
        )
    return {"oneOf": variants} if variants else {"type": "object"}


def document_kinds(api: FastAPI, kinds: KindRegistry) -> None:
    """Make ``api.openapi()`` list the registry's kinds in the submission bodies (built once, cached)."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = build()
        submit = schema["paths"]["/jobs/"]["post"]["requestBody"]["content"]
        uploads = [kind.name for kind in kinds if kind.resource == "jobs" and isinstance(kind.input, Upload)]
        submit["multipart/form-data"]["schema"]["properties"]["kind"]["enum"] = sorted(uploads)
        submit["application/json"]["schema"] = _json_body(kinds)
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
