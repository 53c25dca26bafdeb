"""``/v3/trusted-certificates``: CAs whose device certificates may bootstrap (``bootstrap``) or connect
(``lwm2m``). Running servers pick changes up through NOTIFY."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from ..store import trust
from ..store.trust import SERVICES, STATUSES, TrustedCertificate
from . import queries
from .context import Resource, context
from .fields import Body, Prop, Query, Str
from .http import (
    DATE_TIME,
    NO_CONTENT,
    ListParams,
    decode_query,
    id_param,
    if_match,
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

TAG = "Trusted certificates"
BASE = "/v3/trusted-certificates"
MAX_PEM = 100_000

_NAME = Str(min_length=1, max_length=100)
_DESCRIPTION = Str(max_length=500)
_STATUS = Str(enum=STATUSES)
CREATE = Body(
    "TrustedCertificateReq",
    (
        Prop(
            name="certificate",
            spec=Str(min_length=1, max_length=MAX_PEM),
            required=True,
            description="PEM certificate or chain; the first certificate is the one trusted.",
        ),
        Prop(name="name", spec=_NAME, required=True),
        Prop(name="service", spec=Str(enum=SERVICES), required=True),
        Prop(name="description", spec=_DESCRIPTION, nullable=True),
        Prop(name="status", spec=_STATUS, description="Default ACTIVE."),
    ),
)
UPDATE = Body(
    "TrustedCertificateUpdateReq",
    (
        Prop(name="name", spec=_NAME),
        Prop(name="description", spec=_DESCRIPTION, nullable=True, description="null clears it."),
        Prop(name="status", spec=_STATUS),
    ),
    description="The certificate itself cannot be replaced: add a new entry instead.",
)
LIST_QUERY = list_query(
    Query(name="name__eq", max_length=100),
    Query(name="service__eq", enum=SERVICES),
    Query(name="status__eq", enum=STATUSES),
    Query(name="issuer__like", max_length=500, description="Issuer DN contains this (case-insensitive)."),
    Query(name="subject__like", max_length=500, description="Subject DN contains this (case-insensitive)."),
    Query(name="valid__eq", kind="boolean", description="Within its validity period now."),
)


def encode(item: TrustedCertificate, now: dt.datetime | None = None) -> dict[str, Any]:
    """``TrustedCertificateResp`` (single-tenant: no account, owner or execution mode)."""
    now = now or dt.datetime.now(dt.UTC)
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "certificate": item.certificate_pem,
        "certificate_fingerprint": item.fingerprint_sha256,
        "issuer": item.issuer,
        "subject": item.subject,
        "validity": timestamp(item.not_after),
        "valid": item.not_before <= now < item.not_after,
        "service": item.service,
        "status": item.status,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
        "etag": item.etag,
        "object": "trusted-cert",
    }


async def list_trusted(request: web.Request) -> web.Response:
    """GET with filters."""
    values = decode_query(request, LIST_QUERY)
    params = ListParams.of(values)
    filters = queries.TrustFilters(
        name=values.get("name__eq"),
        service=values.get("service__eq"),
        status=values.get("status__eq"),
        issuer_like=values.get("issuer__like"),
        subject_like=values.get("subject__like"),
        valid=values.get("valid__eq"),
    )
    pool, now = context(request).pool, dt.datetime.now(dt.UTC)
    rows = await queries.trusted_page(
        pool, filters, queries.Page(params.after, params.limit, params.descending), now=now
    )
    total = await queries.trusted_count(pool, filters, now=now) if params.include_total else None
    return list_response(
        [encode(r, now) for r in rows[: params.limit]],
        params,
        has_more=len(rows) > params.limit,
        total=total,
    )


async def create_trusted(request: web.Request) -> web.Response:
    """POST: trust a certificate (409 for a duplicate name or certificate)."""
    body = await read_body(request, CREATE)
    added = await trust.add(
        context(request).pool,
        name=body["name"],
        service=body["service"],
        certificate_pem=body["certificate"],
        description=body.get("description"),
        status=body.get("status", "ACTIVE"),
    )
    set_target(added.id)
    return resource(encode(added), status=201)


async def get_trusted(request: web.Request) -> web.Response:
    """GET one, by id or name."""
    return resource(encode(await trust.find(context(request).pool, path_param(request))))


async def update_trusted(request: web.Request) -> web.Response:
    """PUT: name, description, status."""
    item_id = path_param(request)
    body = await read_body(request, UPDATE)
    updated = await queries.update_trusted(context(request).pool, item_id, body, if_match=if_match(request))
    set_target(updated.id)
    return resource(encode(updated))


async def delete_trusted(request: web.Request) -> web.Response:
    """DELETE: stop trusting it."""
    deleted = await queries.delete_trusted(
        context(request).pool, path_param(request), if_match=if_match(request)
    )
    set_target(deleted)
    return no_content()


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get(BASE, list_trusted, allow_head=False)
    router.add_post(BASE, create_trusted)
    router.add_get(BASE + "/{id}", get_trusted, allow_head=False)
    router.add_put(BASE + "/{id}", update_trusted)
    router.add_delete(BASE + "/{id}", delete_trusted)


SCHEMAS: dict[str, Any] = {
    CREATE.schema_name: CREATE.schema(),
    UPDATE.schema_name: UPDATE.schema(),
    "TrustedCertificateResp": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "name",
            "description",
            "certificate",
            "certificate_fingerprint",
            "issuer",
            "subject",
            "validity",
            "valid",
            "service",
            "status",
            "created_at",
            "updated_at",
            "etag",
            "object",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": ["string", "null"], "maxLength": 500},
            "certificate": {"type": "string", "description": "PEM (chain as stored)."},
            "certificate_fingerprint": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "SHA-256 of the first certificate (DER), hex.",
            },
            "issuer": {"type": "string"},
            "subject": {"type": "string"},
            "validity": {**DATE_TIME, "description": "Expiry of the first certificate."},
            "valid": {"type": "boolean", "description": "Within its validity period now."},
            "service": {"enum": list(SERVICES)},
            "status": {"enum": list(STATUSES)},
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "etag": {"type": "string"},
            "object": {"const": "trusted-cert"},
        },
    },
    "TrustedCertificateRespList": list_schema("TrustedCertificateResp"),
}

PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List trusted certificates",
            tag=TAG,
            operation_id="listTrustedCertificates",
            query=LIST_QUERY,
            responses={"200": ok("TrustedCertificateRespList", etag=False)},
        ),
        "post": operation(
            "Trust a certificate",
            tag=TAG,
            operation_id="createTrustedCertificate",
            body=CREATE,
            responses={"201": ok("TrustedCertificateResp", "Created")},
            description="409 if the name or (for the service) the certificate exists. A `bootstrap` "
            "anchor must be a CA certificate.",
        ),
    },
    BASE + "/{id}": {
        "parameters": [id_param(description="Trusted certificate id (or name).")],
        "get": operation(
            "Get a trusted certificate",
            tag=TAG,
            operation_id="getTrustedCertificate",
            responses={"200": ok("TrustedCertificateResp")},
        ),
        "put": operation(
            "Update a trusted certificate",
            tag=TAG,
            operation_id="updateTrustedCertificate",
            body=UPDATE,
            if_match_header=True,
            responses={"200": ok("TrustedCertificateResp")},
        ),
        "delete": operation(
            "Delete a trusted certificate",
            tag=TAG,
            operation_id="deleteTrustedCertificate",
            if_match_header=True,
            responses={"204": NO_CONTENT},
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="Certificates trusted for bootstrap or LwM2M client authentication.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
