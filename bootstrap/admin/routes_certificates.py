"""``/v3/issued-certificates``: the issuance audit, and revocation (our own resource)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import queries, revocation
from .context import Resource, context
from .fields import Body, Prop, Query, Str
from .http import (
    DATE_TIME,
    NULLABLE_DATE_TIME,
    ListParams,
    decode_query,
    derived_etag,
    id_param,
    list_query,
    list_response,
    list_schema,
    ok,
    operation,
    path_param,
    read_body,
    resource,
    timestamp,
)

TAG = "Issued certificates"
BASE = "/v3/issued-certificates"
ID_PATTERN = "^[0-9]{1,18}$"

REVOKE = Body(
    "RevokeRequest",
    (
        Prop(
            name="reason", spec=Str(enum=revocation.REASONS), required=True, description="RFC 5280 CRLReason."
        ),
    ),
)
LIST_QUERY = list_query(
    Query(name="endpoint__eq", max_length=128),
    Query(name="service__eq", max_length=100),
    Query(name="issuer_id__eq", max_length=32, description="Issuer id (built-in CA certificates have none)."),
    Query(name="valid__eq", kind="boolean", description="Within its validity period now and not revoked."),
    after=Query(name="after", pattern=ID_PATTERN, description="Id of the last item of the previous page."),
)


def encode(record: asyncpg.Record, now: dt.datetime, *, with_pem: bool = False) -> dict[str, Any]:
    """``IssuedCertificate`` (``IssuedCertificateDetail`` with the PEM)."""
    body: dict[str, Any] = {
        "id": str(record["id"]),
        "serial_number": record["serial_number"],
        "endpoint": record["endpoint"],
        "service": record["service_reference"],
        "issuer_id": record["issuer_id"],
        "issuer_name": record["issuer_name"],
        "issuer_type": record["issuer_type"],
        "certificate_fingerprint": record["fingerprint_sha256"],
        "subject": record["subject"],
        "not_before": timestamp(record["not_before"]),
        "not_after": timestamp(record["not_after"]),
        "issued_at": timestamp(record["issued_at"]),
        "revoked_at": timestamp(record["revoked_at"]),
        "revocation_reason": record["revocation_reason"],
        "valid": record["revoked_at"] is None and record["not_before"] <= now < record["not_after"],
        "request_id": record["request_id"],
        "etag": derived_etag(record["id"], record["revoked_at"]),
        "object": "issued-certificate",
    }
    if with_pem:
        certificate = x509.load_der_x509_certificate(bytes(record["certificate"]))
        body["certificate"] = certificate.public_bytes(Encoding.PEM).decode()
    return body


def _cert_id(request: web.Request) -> int:
    return int(path_param(request, pattern=ID_PATTERN))


async def list_issued(request: web.Request) -> web.Response:
    """GET the audit, filtered, by id."""
    values = decode_query(request, LIST_QUERY)
    params = ListParams.of(values)
    filters = queries.IssuedFilters(
        endpoint=values.get("endpoint__eq"),
        service=values.get("service__eq"),
        issuer_id=values.get("issuer_id__eq"),
        valid=values.get("valid__eq"),
    )
    pool, now = context(request).pool, dt.datetime.now(dt.UTC)
    after = int(params.after) if params.after is not None else None
    rows = await queries.issued_page(
        pool, filters, queries.Page(after, params.limit, params.descending), now=now
    )
    total = await queries.issued_count(pool, filters, now=now) if params.include_total else None
    return list_response(
        [encode(r, now) for r in rows[: params.limit]], params, has_more=len(rows) > params.limit, total=total
    )


async def get_issued(request: web.Request) -> web.Response:
    """GET one, with the certificate as PEM."""
    record = await queries.issued_row(context(request).pool, _cert_id(request))
    return resource(encode(record, dt.datetime.now(dt.UTC), with_pem=True))


async def revoke_issued(request: web.Request) -> web.Response:
    """POST revoke: at the CA if it can, then in the audit."""
    cert_id = _cert_id(request)
    body = await read_body(request, REVOKE)
    ctx = context(request)
    done = await revocation.revoke(ctx.pool, ctx.box, cert_id, body["reason"])
    return resource(encode(done.record, dt.datetime.now(dt.UTC), with_pem=True))


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get(BASE, list_issued, allow_head=False)
    router.add_get(BASE + "/{id}", get_issued, allow_head=False)
    router.add_post(BASE + "/{id}/revoke", revoke_issued)


_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": ID_PATTERN},
    "serial_number": {"type": "string", "pattern": "^[0-9A-F]+$", "description": "Upper-case hex."},
    "endpoint": {"type": "string"},
    "service": {"type": "string", "description": "Service reference the certificate was issued for."},
    "issuer_id": {"type": ["string", "null"], "description": "null: the built-in CA."},
    "issuer_name": {"type": "string"},
    "issuer_type": {"type": "string"},
    "certificate_fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "subject": {"type": "string"},
    "not_before": DATE_TIME,
    "not_after": DATE_TIME,
    "issued_at": DATE_TIME,
    "revoked_at": NULLABLE_DATE_TIME,
    "revocation_reason": {"type": ["string", "null"]},
    "valid": {"type": "boolean", "description": "Within its validity period now and not revoked."},
    "request_id": {"type": "string"},
    "etag": {"type": "string"},
    "object": {"const": "issued-certificate"},
}
SCHEMAS: dict[str, Any] = {
    REVOKE.schema_name: REVOKE.schema(),
    "IssuedCertificate": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_PROPERTIES),
        "properties": _PROPERTIES,
    },
    "IssuedCertificateDetail": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_PROPERTIES, "certificate"],
        "properties": {**_PROPERTIES, "certificate": {"type": "string", "description": "PEM."}},
    },
    "IssuedCertificateList": list_schema("IssuedCertificate"),
}

_ID = id_param(pattern=ID_PATTERN, description="Audit row id.")
PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List issued certificates",
            tag=TAG,
            operation_id="listIssuedCertificates",
            query=LIST_QUERY,
            responses={"200": ok("IssuedCertificateList", etag=False)},
        ),
    },
    BASE + "/{id}": {
        "parameters": [_ID],
        "get": operation(
            "Get an issued certificate",
            tag=TAG,
            operation_id="getIssuedCertificate",
            responses={"200": ok("IssuedCertificateDetail")},
        ),
    },
    BASE + "/{id}/revoke": {
        "parameters": [_ID],
        "post": operation(
            "Revoke an issued certificate",
            tag=TAG,
            operation_id="revokeIssuedCertificate",
            body=REVOKE,
            responses={"200": ok("IssuedCertificateDetail")},
            description="Passed on to the CA when its backend supports revocation (GlobalSign); 424 if the "
            "CA refuses, and then nothing is recorded. 409 if already revoked.",
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="Every certificate handed out (the issuance audit), and revocation.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
