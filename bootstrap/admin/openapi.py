"""The OpenAPI 3.1 document of the admin API, assembled from the same specs the handlers decode with.

Each :class:`~bootstrap.admin.context.Resource` contributes its paths and component schemas; this
module adds the shared parts (error object, ETag header, If-Match parameter, bearer security) and
the unauthenticated operational endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import __version__
from .context import Resource
from .http import json_content
from .middleware import ERROR_TYPES

OPENAPI_PATH = "/v3/openapi.json"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "object", "type", "message", "request_id", "fields"],
    "properties": {
        "code": {"type": "integer", "minimum": 400, "maximum": 599},
        "object": {"const": "error"},
        "type": {"type": "string", "description": f"One of {', '.join(sorted(set(ERROR_TYPES.values())))}."},
        "message": {"type": "string"},
        "request_id": {"type": "string", "description": "Also in the X-Request-Id response header."},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "description": "Request field at fault (dotted path)."},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string"},
        "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
}


def _operational_paths() -> dict[str, Any]:
    public: list[dict[str, Any]] = []
    return {
        "/health": {
            "get": {
                "summary": "Liveness: the process answers",
                "operationId": "health",
                "tags": ["Operations"],
                "security": public,
                "responses": {"200": {"description": "Alive", "content": json_content(_STATUS_SCHEMA)}},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: the database answers and the server is ready",
                "operationId": "ready",
                "tags": ["Operations"],
                "security": public,
                "responses": {
                    "200": {"description": "Ready", "content": json_content(_STATUS_SCHEMA)},
                    "503": {"description": "Not ready", "content": json_content(_STATUS_SCHEMA)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["Operations"],
                "security": public,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["Operations"],
                "security": public,
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": json_content({"type": "object"})}
                },
            }
        },
    }


def build_document(resources: Sequence[Resource]) -> dict[str, Any]:
    """The OpenAPI document for an application serving ``resources``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for item in resources:
        for path, value in item.paths.items():
            if path in paths:
                raise ValueError(f"two resources define {path}")
            paths[path] = value
        for name, schema in item.schemas.items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two resources define schema {name} differently")
            schemas[name] = schema
    paths.update(_operational_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LwM2M bootstrap server admin API",
            "version": __version__,
            "description": (
                "Certificate issuers, service configurations and trusted certificates in the shapes of "
                "the Pelion/Izuma External CA API, plus device PSK credentials, the issued-certificate "
                "audit and API keys. Lists are `{object: list, data, has_more, limit, after, order}` "
                "ordered by id with keyset pagination (`after` = last id seen); errors are the `Error` "
                "object. Send `Authorization: Bearer <API key>` (create keys with "
                "`lwm2m-bootstrap apikey create NAME`)."
            ),
        },
        "tags": [{"name": r.tag, "description": r.description} for r in resources]
        + [{"name": "Operations", "description": "Health, readiness, metrics (no key needed)."}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An admin API key."}
            },
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "Error (any 4xx or 5xx)",
                    "content": json_content({"$ref": "#/components/schemas/Error"}),
                }
            },
            "headers": {
                "ETag": {
                    "description": "Entity tag of the resource; send it back in If-Match.",
                    "schema": {"type": "string"},
                }
            },
            "parameters": {
                "IfMatch": {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "Apply only if the resource still has this ETag (else 412).",
                    "schema": {"type": "string"},
                }
            },
        },
    }
