"""``/v3/certificate-issuers``: third-party CAs (Pelion External CA shapes).

Credentials are write-only: accepted on POST and PUT, sealed by the service layer, never returned.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..issuer_service import Issuer
from .context import Resource, context
from .fields import Body, Prop, Str, StrMap
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
    paginate,
    path_param,
    read_body,
    resource,
    set_target,
    timestamp,
)

TAG = "Certificate issuers"
BASE = "/v3/certificate-issuers"
ISSUER_TYPES = ("GLOBAL_SIGN", "CFSSL_AUTH")
HMAC_HEX_PATTERN = "^([a-fA-F0-9][a-fA-F0-9]){1,32}$"

_NAME = Str(min_length=1, max_length=50)
_DESCRIPTION = Str(max_length=100)
_ATTRIBUTES = StrMap(variants=("CfsslAttributes", "GlobalSignAttributes"))
_CREDENTIALS = StrMap(variants=("CfsslAuthCredentials", "GlobalSignCredentials"))

CREATE = Body(
    "CertificateIssuerRequest",
    (
        Prop(name="name", spec=_NAME, required=True, description="Unique name; `builtin` is reserved."),
        Prop(name="description", spec=_DESCRIPTION, nullable=True),
        Prop(name="issuer_type", spec=Str(enum=ISSUER_TYPES), required=True),
        Prop(
            name="issuer_attributes",
            spec=_ATTRIBUTES,
            nullable=True,
            description="Non-secret settings; which keys are allowed depends on `issuer_type`.",
        ),
        Prop(
            name="issuer_credentials",
            spec=_CREDENTIALS,
            required=True,
            write_only=True,
            description="Secrets for `issuer_type`; stored encrypted, never returned.",
        ),
    ),
)
UPDATE = Body(
    "CertificateIssuerUpdateRequest",
    (
        Prop(name="name", spec=_NAME),
        Prop(name="description", spec=_DESCRIPTION, nullable=True, description="null: unchanged."),
        Prop(
            name="issuer_attributes",
            spec=_ATTRIBUTES,
            nullable=True,
            description="Replaces all attributes when given; null: unchanged.",
        ),
        Prop(
            name="issuer_credentials",
            spec=_CREDENTIALS,
            nullable=True,
            write_only=True,
            description="Replaces all credentials when given; null: unchanged.",
        ),
    ),
    description="All optional; the result is validated as a whole and resets the last verification.",
)
LIST_QUERY = list_query()


def encode(issuer: Issuer) -> dict[str, Any]:
    """``CertificateIssuerInfo``: never any credential."""
    return {
        "id": issuer.id,
        "name": issuer.name,
        "description": issuer.description,
        "issuer_type": issuer.issuer_type,
        "issuer_attributes": dict(issuer.issuer_attributes),
        "created_at": timestamp(issuer.created_at),
        "etag": issuer.etag,
        "object": "certificate-issuer",
        # Not in the reference shape: the outcome of the last POST /{id}/verify (reset on update),
        # so operators and the console can warn before activating a CA that never verified.
        "verified_at": timestamp(issuer.verified_at) if issuer.verified_at else None,
        "verify_successful": issuer.verify_successful,
        "verify_message": issuer.verify_message,
    }


async def list_issuers(request: web.Request) -> web.Response:
    """GET: all issuers, a page at a time."""
    params = ListParams.of(decode_query(request, LIST_QUERY))
    issuers = await context(request).issuers.list_issuers()
    page, has_more = paginate(issuers, lambda i: i.id, params)
    return list_response([encode(i) for i in page], params, has_more=has_more, total=len(issuers))


async def create_issuer(request: web.Request) -> web.Response:
    """POST: register an issuer (not active for any service yet)."""
    body = await read_body(request, CREATE)
    issuer = await context(request).issuers.create_issuer(
        name=body["name"],
        issuer_type=body["issuer_type"],
        description=body.get("description"),
        attributes=body.get("issuer_attributes"),
        credentials=body["issuer_credentials"],
    )
    set_target(issuer.id)
    return resource(encode(issuer), status=201)


async def get_issuer(request: web.Request) -> web.Response:
    """GET one."""
    return resource(encode(await context(request).issuers.get_issuer(path_param(request))))


async def update_issuer(request: web.Request) -> web.Response:
    """PUT: change what is given."""
    issuer_id = path_param(request)
    body = await read_body(request, UPDATE)
    issuer = await context(request).issuers.update_issuer(
        issuer_id,
        name=body.get("name"),
        description=body.get("description"),
        attributes=body.get("issuer_attributes"),
        credentials=body.get("issuer_credentials"),
        if_match=if_match(request),
    )
    set_target(issuer.id)
    return resource(encode(issuer))


async def delete_issuer(request: web.Request) -> web.Response:
    """DELETE: refused with 400 while a service configuration uses the issuer."""
    await context(request).issuers.delete_issuer(path_param(request), if_match=if_match(request))
    return no_content()


async def verify_issuer(request: web.Request) -> web.Response:
    """POST verify: have the CA sign a test certificate; 200 either way, with the outcome."""
    outcome = await context(request).issuers.verify_issuer(path_param(request))
    return web.json_response({"successful": outcome.successful, "message": outcome.message})


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers."""
    router.add_get(BASE, list_issuers, allow_head=False)
    router.add_post(BASE, create_issuer)
    router.add_get(BASE + "/{id}", get_issuer, allow_head=False)
    router.add_put(BASE + "/{id}", update_issuer)
    router.add_delete(BASE + "/{id}", delete_issuer)
    router.add_post(BASE + "/{id}/verify", verify_issuer)


_ID = id_param(description="Issuer id (or name).")
SCHEMAS: dict[str, Any] = {
    CREATE.schema_name: CREATE.schema(),
    UPDATE.schema_name: UPDATE.schema(),
    "CertificateIssuerInfo": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "name",
            "description",
            "issuer_type",
            "issuer_attributes",
            "created_at",
            "etag",
            "object",
            "verified_at",
            "verify_successful",
            "verify_message",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string", "minLength": 1, "maxLength": 50},
            "description": {"type": ["string", "null"], "maxLength": 100},
            "issuer_type": {"enum": list(ISSUER_TYPES)},
            "issuer_attributes": {"type": "object", "additionalProperties": {"type": "string"}},
            "created_at": DATE_TIME,
            "etag": {"type": "string"},
            "object": {"const": "certificate-issuer"},
            "verified_at": {"anyOf": [DATE_TIME, {"type": "null"}]},
            "verify_successful": {"type": ["boolean", "null"]},
            "verify_message": {"type": ["string", "null"]},
        },
    },
    "CertificateIssuerInfoList": list_schema("CertificateIssuerInfo"),
    "CertificateIssuerVerifyResponse": {
        "type": "object",
        "additionalProperties": False,
        "required": ["successful", "message"],
        "properties": {"successful": {"type": "boolean"}, "message": {"type": "string"}},
    },
    "CfsslAttributes": {
        "type": "object",
        "description": "`issuer_attributes` of a CFSSL_AUTH issuer.",
        "additionalProperties": False,
        "required": ["host_url"],
        "properties": {
            "host_url": {"type": "string", "description": "Base URL of the CFSSL server (http or https)."},
            "cfssl_profile": {"type": "string", "description": "Signing profile (its auth_key must match)."},
            "cfssl_label": {"type": "string", "description": "Signer label (multi-root CFSSL)."},
            "ca_bundle_pem": {
                "type": "string",
                "description": "CA certificates to trust for an https host_url.",
            },
        },
    },
    "GlobalSignAttributes": {
        "type": "object",
        "description": "`issuer_attributes` of a GLOBAL_SIGN issuer (all optional; an extension of ours).",
        "additionalProperties": False,
        "properties": {
            "base_url": {"type": "string", "description": "HVCA API base URL (default: the EMEA endpoint)."},
            "ca_bundle_pem": {"type": "string", "description": "CA certificates to trust for the API."},
            "key_format": {"enum": ["PKCS8", "PKCS10"]},
        },
    },
    "CfsslAuthCredentials": {
        "type": "object",
        "additionalProperties": False,
        "required": ["hmac_hex_key"],
        "properties": {"hmac_hex_key": {"type": "string", "pattern": HMAC_HEX_PATTERN, "writeOnly": True}},
    },
    "GlobalSignCredentials": {
        "type": "object",
        "additionalProperties": False,
        "required": ["api_key", "api_secret", "client_certificate", "private_key"],
        "properties": {
            "api_key": {"type": "string", "minLength": 1, "maxLength": 1000, "writeOnly": True},
            "api_secret": {"type": "string", "minLength": 1, "maxLength": 250, "writeOnly": True},
            "client_certificate": {"type": "string", "minLength": 1, "maxLength": 3000, "writeOnly": True},
            "private_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": 3000,
                "writeOnly": True,
                "description": "PEM, possibly encrypted with `passphrase`.",
            },
            "passphrase": {"type": "string", "maxLength": 1000, "writeOnly": True},
        },
    },
}

PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List certificate issuers",
            tag=TAG,
            operation_id="listCertificateIssuers",
            query=LIST_QUERY,
            responses={"200": ok("CertificateIssuerInfoList", etag=False)},
        ),
        "post": operation(
            "Create a certificate issuer",
            tag=TAG,
            operation_id="createCertificateIssuer",
            body=CREATE,
            responses={"201": ok("CertificateIssuerInfo", "Created")},
            description="409 if the name exists; 400 naming the field if the configuration is invalid.",
        ),
    },
    BASE + "/{id}": {
        "parameters": [_ID],
        "get": operation(
            "Get a certificate issuer",
            tag=TAG,
            operation_id="getCertificateIssuer",
            responses={"200": ok("CertificateIssuerInfo")},
        ),
        "put": operation(
            "Update a certificate issuer",
            tag=TAG,
            operation_id="updateCertificateIssuer",
            body=UPDATE,
            if_match_header=True,
            responses={"200": ok("CertificateIssuerInfo")},
        ),
        "delete": operation(
            "Delete a certificate issuer",
            tag=TAG,
            operation_id="deleteCertificateIssuer",
            if_match_header=True,
            responses={"204": NO_CONTENT},
            description="400 while the issuer is active for a service.",
        ),
    },
    BASE + "/{id}/verify": {
        "parameters": [_ID],
        "post": operation(
            "Verify a certificate issuer",
            tag=TAG,
            operation_id="verifyCertificateIssuer",
            responses={"200": ok("CertificateIssuerVerifyResponse", etag=False)},
            description="Asks the CA to sign a test certificate (may use CA quota). A CA failure is "
            "200 with `successful: false` and the reason.",
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="Third-party CAs that can sign device certificates.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
