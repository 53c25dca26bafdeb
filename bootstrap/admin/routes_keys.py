"""``/v3/api-keys``: the keys of the admin API itself. The key is returned once, by POST."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import keys
from .context import Resource, context
from .fields import Body, Prop, Str
from .http import (
    DATE_TIME,
    NO_CONTENT,
    NULLABLE_DATE_TIME,
    ListParams,
    check_if_match,
    decode_query,
    derived_etag,
    id_param,
    list_query,
    list_response,
    list_schema,
    no_content,
    ok,
    operation,
    path_param,
    read_body,
    resource,
    set_target,
    timestamp,
)

TAG = "API keys"
BASE = "/v3/api-keys"

CREATE = Body(
    "ApiKeyRequest",
    (
        Prop(
            name="name",
            spec=Str(min_length=1, max_length=100, pattern=keys.NAME_PATTERN),
            required=True,
            description="Unique among live keys; the audit names every change after it.",
        ),
    ),
)
LIST_QUERY = list_query()


def encode(key: keys.ApiKey) -> dict[str, Any]:
    """``ApiKey``: never the key or its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": "ACTIVE" if key.active else "REVOKED",
        "created_at": timestamp(key.created_at),
        "last_used_at": timestamp(key.last_used_at),
        "revoked_at": timestamp(key.revoked_at),
        "etag": derived_etag(key.id, key.revoked_at),
        "object": "api-key",
    }


async def list_keys(request: web.Request) -> web.Response:
    """GET: live and revoked keys, by id."""
    params = ListParams.of(decode_query(request, LIST_QUERY))
    pool = context(request).pool
    rows = await keys.list_keys(
        pool, after=params.after, limit=params.limit + 1, descending=params.descending
    )
    total = await keys.count(pool) if params.include_total else None
    return list_response(
        [encode(k) for k in rows[: params.limit]], params, has_more=len(rows) > params.limit, total=total
    )


async def create_key(request: web.Request) -> web.Response:
    """POST: a new key, shown in this response only."""
    body = await read_body(request, CREATE)
    key, plaintext = await keys.create(context(request).pool, body["name"])
    set_target(key.id)
    return resource({**encode(key), "key": plaintext}, status=201)


async def get_key(request: web.Request) -> web.Response:
    """GET one key's metadata."""
    return resource(encode(await keys.get(context(request).pool, path_param(request))))


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE: revoke (the row stays, for the audit)."""
    pool = context(request).pool
    current = await keys.get(pool, path_param(request))
    check_if_match(request, encode(current)["etag"], "API key")
    await keys.revoke(pool, current.id)
    return no_content()


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get(BASE, list_keys, allow_head=False)
    router.add_post(BASE, create_key)
    router.add_get(BASE + "/{id}", get_key, allow_head=False)
    router.add_delete(BASE + "/{id}", revoke_key)


_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string", "pattern": keys.NAME_PATTERN},
    "prefix": {"type": "string", "pattern": "^[0-9a-f]{8}$", "description": "Public part of the key."},
    "status": {"enum": ["ACTIVE", "REVOKED"]},
    "created_at": DATE_TIME,
    "last_used_at": {**NULLABLE_DATE_TIME, "description": "Recorded with a resolution of one minute."},
    "revoked_at": NULLABLE_DATE_TIME,
    "etag": {"type": "string"},
    "object": {"const": "api-key"},
}
SCHEMAS: dict[str, Any] = {
    CREATE.schema_name: CREATE.schema(),
    "ApiKey": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_PROPERTIES),
        "properties": _PROPERTIES,
    },
    "ApiKeyCreated": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_PROPERTIES, "key"],
        "properties": {
            **_PROPERTIES,
            "key": {
                "type": "string",
                "pattern": "^lwb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$",
                "description": "The key, shown only here; send it as `Authorization: Bearer <key>`.",
            },
        },
    },
    "ApiKeyList": list_schema("ApiKey"),
}

PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List API keys",
            tag=TAG,
            operation_id="listApiKeys",
            query=LIST_QUERY,
            responses={"200": ok("ApiKeyList", etag=False)},
        ),
        "post": operation(
            "Create an API key",
            tag=TAG,
            operation_id="createApiKey",
            body=CREATE,
            responses={"201": ok("ApiKeyCreated", "Created; the only response that contains the key")},
            description="409 if a live key has the name.",
        ),
    },
    BASE + "/{id}": {
        "parameters": [id_param(description="API key id.")],
        "get": operation(
            "Get an API key",
            tag=TAG,
            operation_id="getApiKey",
            responses={"200": ok("ApiKey")},
        ),
        "delete": operation(
            "Revoke an API key",
            tag=TAG,
            operation_id="revokeApiKey",
            if_match_header=True,
            responses={"204": NO_CONTENT},
            description="404 if the key is unknown or already revoked.",
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="Keys for this API; only their SHA-256 is stored.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
