"""``/v3/certificate-issuer-configurations``: which CA signs for each service.

``LWM2M`` (device certificates for the LwM2M connection) always exists and has its own endpoint,
``/v3/certificate-issuer-configurations/lwm2m``; every other reference is a custom service.
``certificate_issuer_id: null`` means the built-in CA.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..issuer_service import LWM2M, ServiceConfiguration
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
    paginate,
    path_param,
    read_body,
    resource,
    set_target,
    timestamp,
)

TAG = "Certificate issuer configurations"
BASE = "/v3/certificate-issuer-configurations"
REFERENCE_PATTERN = "^[A-Za-z0-9_.-]{1,100}$"

_ISSUER_ID = Prop(
    name="certificate_issuer_id",
    spec=Str(max_length=32),
    required=True,
    nullable=True,
    description="Issuer id; null: the built-in CA.",
)
CREATE = Body(
    "CreateCertificateIssuerConfig",
    (
        Prop(
            name="reference",
            spec=Str(min_length=1, max_length=100, pattern=REFERENCE_PATTERN),
            required=True,
            description="Service reference; `LWM2M` and `BOOTSTRAP` (any case) are reserved.",
        ),
        _ISSUER_ID,
    ),
)
UPDATE = Body("CertificateIssuerConfigRequest", (_ISSUER_ID,))
LIST_QUERY = list_query(
    Query(name="reference__eq", max_length=100, description="Only the configuration with this reference.")
)


def encode(config: ServiceConfiguration) -> dict[str, Any]:
    """``CertificateIssuerConfigResponse``."""
    return {
        "id": config.id,
        "reference": config.reference,
        "certificate_issuer_id": config.certificate_issuer_id,
        "is_custom": config.is_custom,
        "created_at": timestamp(config.created_at),
        "updated_at": timestamp(config.updated_at),
        "etag": config.etag,
        "object": "certificate-issuer-configuration",
    }


def _config_id(request: web.Request) -> str:
    value = path_param(request)
    return LWM2M if value.lower() == "lwm2m" else value


async def list_configs(request: web.Request) -> web.Response:
    """GET: configurations, optionally only ``reference__eq``."""
    values = decode_query(request, LIST_QUERY)
    params = ListParams.of(values)
    configs = await context(request).issuers.list_services(reference=values.get("reference__eq"))
    page, has_more = paginate(configs, lambda c: c.id, params)
    return list_response([encode(c) for c in page], params, has_more=has_more, total=len(configs))


async def create_config(request: web.Request) -> web.Response:
    """POST: a custom service configuration."""
    body = await read_body(request, CREATE)
    config = await context(request).issuers.create_service(body["reference"], body["certificate_issuer_id"])
    set_target(config.id)
    return resource(encode(config), status=201)


async def get_config(request: web.Request) -> web.Response:
    """GET one, by id or reference."""
    return resource(encode(await context(request).issuers.get_service(_config_id(request))))


async def update_config(request: web.Request) -> web.Response:
    """PUT: point a configuration at another issuer."""
    config_id = _config_id(request)
    body = await read_body(request, UPDATE)
    config = await context(request).issuers.set_service_issuer(
        config_id, body["certificate_issuer_id"], if_match=if_match(request)
    )
    set_target(config.id)
    return resource(encode(config))


async def delete_config(request: web.Request) -> web.Response:
    """DELETE a custom configuration (``LWM2M`` cannot be deleted)."""
    await context(request).issuers.delete_service(_config_id(request), if_match=if_match(request))
    return no_content()


async def get_lwm2m(request: web.Request) -> web.Response:
    """GET the ``LWM2M`` configuration."""
    return resource(encode(await context(request).issuers.get_service(LWM2M)))


async def put_lwm2m(request: web.Request) -> web.Response:
    """PUT the CA of the ``LWM2M`` service."""
    body = await read_body(request, UPDATE)
    config = await context(request).issuers.set_service_issuer(
        LWM2M, body["certificate_issuer_id"], if_match=if_match(request)
    )
    set_target(config.id)
    return resource(encode(config))


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the handlers (``/lwm2m`` before ``/{id}``)."""
    router.add_get(BASE, list_configs, allow_head=False)
    router.add_post(BASE, create_config)
    router.add_get(BASE + "/lwm2m", get_lwm2m, allow_head=False)
    router.add_put(BASE + "/lwm2m", put_lwm2m)
    router.add_get(BASE + "/{id}", get_config, allow_head=False)
    router.add_put(BASE + "/{id}", update_config)
    router.add_delete(BASE + "/{id}", delete_config)


SCHEMAS: dict[str, Any] = {
    CREATE.schema_name: CREATE.schema(),
    UPDATE.schema_name: UPDATE.schema(),
    "CertificateIssuerConfigResponse": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "reference",
            "certificate_issuer_id",
            "is_custom",
            "created_at",
            "updated_at",
            "etag",
            "object",
        ],
        "properties": {
            "id": {"type": "string"},
            "reference": {"type": "string", "pattern": REFERENCE_PATTERN},
            "certificate_issuer_id": {"type": ["string", "null"]},
            "is_custom": {"type": "boolean"},
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "etag": {"type": "string"},
            "object": {"const": "certificate-issuer-configuration"},
        },
    },
    "CertificateIssuerConfigList": list_schema("CertificateIssuerConfigResponse"),
}

PATHS: dict[str, Any] = {
    BASE: {
        "get": operation(
            "List certificate issuer configurations",
            tag=TAG,
            operation_id="listCertificateIssuerConfigs",
            query=LIST_QUERY,
            responses={"200": ok("CertificateIssuerConfigList", etag=False)},
        ),
        "post": operation(
            "Create a custom certificate issuer configuration",
            tag=TAG,
            operation_id="createCertificateIssuerConfig",
            body=CREATE,
            responses={"201": ok("CertificateIssuerConfigResponse", "Created")},
            description="409 if the reference exists; 400 for a reserved reference.",
        ),
    },
    BASE + "/lwm2m": {
        "get": operation(
            "Get the LwM2M certificate issuer configuration",
            tag=TAG,
            operation_id="getLwm2mCertificateIssuerConfig",
            responses={"200": ok("CertificateIssuerConfigResponse")},
        ),
        "put": operation(
            "Set the CA of the LwM2M service",
            tag=TAG,
            operation_id="updateLwm2mCertificateIssuerConfig",
            body=UPDATE,
            if_match_header=True,
            responses={"200": ok("CertificateIssuerConfigResponse")},
        ),
    },
    BASE + "/{id}": {
        "parameters": [id_param(description="Configuration id (or reference).")],
        "get": operation(
            "Get a certificate issuer configuration",
            tag=TAG,
            operation_id="getCertificateIssuerConfig",
            responses={"200": ok("CertificateIssuerConfigResponse")},
        ),
        "put": operation(
            "Update a certificate issuer configuration",
            tag=TAG,
            operation_id="updateCertificateIssuerConfig",
            body=UPDATE,
            if_match_header=True,
            responses={"200": ok("CertificateIssuerConfigResponse")},
        ),
        "delete": operation(
            "Delete a custom certificate issuer configuration",
            tag=TAG,
            operation_id="deleteCertificateIssuerConfig",
            if_match_header=True,
            responses={"204": NO_CONTENT},
        ),
    },
}

RESOURCE = Resource(
    tag=TAG,
    description="Which CA signs device certificates for each service.",
    add_routes=add_routes,
    paths=PATHS,
    schemas=SCHEMAS,
)
