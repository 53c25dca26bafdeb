"""``/v3/device-credentials``: per-device PSK credentials for PSK-mode bootstrap (our own resource).

The key is write-only: it is sealed with the master key and never returned or logged.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from ..errors import NotFound, PreconditionFailed
from ..store import devices
from . import queries
from .context import Resource, context
from .fields import Body, Prop, Query, Str
from .http import (
    DATE_TIME,
    NO_CONTENT,
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
    timestamp,
)

TAG = "Device credentials"
BASE = "/v3/device-credentials"
PSK_KEY_PATTERN = f"^([0-9a-fA-F]{{2}}){{{devices.MIN_KEY_BYTES},{devices.MAX_KEY_BYTES}}}$"

PUT_BODY = Body(
    "DeviceCredentialRequest",
    (
        Prop(
            name="psk_identity",
            spec=Str(min_length=1, max_length=devices.MAX_IDENTITY_BYTES),
            required=True,
            description=f"PSK identity the device presents (1-{devices.MAX_IDENTITY_BYTES} bytes UTF-8).",
        ),
        Prop(
            name="psk_key",
            spec=Str(pattern=PSK_KEY_PATTERN),
            required=True,
            write_only=True,
            description=f"PSK, hex ({devices.MIN_KEY_BYTES}-{devices.MAX_KEY_BYTES} bytes); never returned.",
        ),
    ),
)
LIST_QUERY = list_query(Query(name="psk_identity__eq", max_length=devices.MAX_IDENTITY_BYTES))


def encode(record: asyncpg.Record) -> dict[str, Any]:
    """``DeviceCredential``: metadata only."""
    return {
        "endpoint": record["endpoint"],
        "psk_identity": record["psk_identity"],
        "created_at": timestamp(record["created_at"]),
        "updated_at": timestamp(record["updated_at"]),
        "etag": derived_etag(record["endpoint"], record["psk_identity"], record["updated_at"].isoformat()),
        "object": "device-credential",
    }


def _endpoint(request: web.Request) -> str:
    return path_param(request, "endpoint")


async def list_credentials(request: web.Request) -> web.Response:
    """GET: endpoints with PSK credentials, ordered by endpoint name."""
    values = decode_query(request, LIST_QUERY)
    params = ListParams.of(values)
    identity = values.get("psk_identity__eq")
    pool = context(request).pool
    rows = await queries.device_page(
        pool, identity, queries.Page(params.after, params.limit, params.descending)
    )
    total = await queries.device_count(pool, identity) if params.include_total else None
    return list_response(
        [encode(r) for r in rows[: params.limit]], params, has_more=len(rows) > params.limit, total=total
    )


async def get_credential(request: web.Request) -> web.Response:
    """GET one endpoint's credential metadata."""
    endpoint = _endpoint(request)
    record = await queries.device_row(context(request).pool, endpoint)
    if record is None:
        raise NotFound(f"no PSK credentials for endpoint {endpoint!r}")
    return resource(encode(record))


async def put_credential(request: web.Request) -> web.Response:
    """PUT: create (201) or replace (200) an endpoint's PSK; 409 if the identity is another's."""
    endpoint = _endpoint(request)
    body = await read_body(request, PUT_BODY)
    ctx = context(request)
    credential = devices.PskCredential(endpoint, body["psk_identity"], bytes.fromhex(body["psk_key"]))
    devices.validate(credential.endpoint, credential.identity, credential.key)
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await queries.device_row(conn, endpoint, for_update=True)
        if request.headers.get("If-Match") is not None:
            if current is None:
                raise PreconditionFailed(f"If-Match given but endpoint {endpoint!r} has no PSK credentials")
            check_if_match(request, encode(current)["etag"], "device credential")
        await devices.put(conn, ctx.box, credential)
        record = await queries.device_row(conn, endpoint)
    assert record is not None
    return resource(encode(record), status=200 if current is not None else 201)


async def delete_credential(request: web.Request) -> web.Response:
    """DELETE an endpoint's PSK."""
    endpoint = _endpoint(request)
    async with context(request).pool.acquire() as conn, conn.transaction():
        current = await queries.device_row(conn, endpoint, for_update=True)
        if current is None:
            raise NotFound(f"no PSK credentials for endpoint {endpoint!r}")
        check_if_match(request, encode(current)["etag"], "device credential")
        await devices.remove(conn, endpoint)
    return no_content()


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get(BASE, list_credentials, allow_head=False)
    router.add_get(BASE + "/{endpoint}", get_credential, allow_head=False)
    router.add_put(BASE + "/{endpoint}", put_credential)
    router.add_delete(BASE + "/{endpoint}", delete_credential)


SCHEMAS: dict[str, Any] = {
    PUT_BODY.schema_name: PUT_BODY.schema(),
    "DeviceCredential": {
        "type": "object",
        "additionalProperties": False,
        "required": ["endpoint", "psk_identity", "created_at", "updated_at", "etag", "object"],
        "properties": {
            "endpoint": {"type": "string", "minLength": 1, "maxLength": 128},
            "psk_identity": {"type": "string", "minLength": 1},
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "etag": {"type": "string"},
            "object": {"const": "device-credential"},
        },
    },
    "DeviceCredentialList": list_schema("DeviceCredential"),
}

_ENDPOINT = {
    **id_param("endpoint", description="LwM2M endpoint client name (1-128 characters)."),
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
}
PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List device PSK credentials",
            tag=TAG,
            operation_id="listDeviceCredentials",
            query=LIST_QUERY,
            responses={"200": ok("DeviceCredentialList", etag=False)},
            description="Ordered by endpoint; `after` is an endpoint name. Keys are never returned.",
        ),
    },
    BASE + "/{endpoint}": {
        "parameters": [_ENDPOINT],
        "get": operation(
            "Get an endpoint's PSK credential metadata",
            tag=TAG,
            operation_id="getDeviceCredential",
            responses={"200": ok("DeviceCredential")},
        ),
        "put": operation(
            "Create or replace an endpoint's PSK credentials",
            tag=TAG,
            operation_id="putDeviceCredential",
            body=PUT_BODY,
            if_match_header=True,
            responses={"200": ok("DeviceCredential", "Replaced"), "201": ok("DeviceCredential", "Created")},
            description="409 if the PSK identity belongs to another endpoint.",
        ),
        "delete": operation(
            "Delete an endpoint's PSK credentials",
            tag=TAG,
            operation_id="deleteDeviceCredential",
            if_match_header=True,
            responses={"204": NO_CONTENT},
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="PSK identities and keys of devices that bootstrap in PSK mode.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
