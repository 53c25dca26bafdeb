"""``/v3/bootstrap-configurations`` and ``/v3/bootstrap-sessions`` (our own resources).

A bootstrap configuration is the LwM2M server account a device is given when it bootstraps: the
``default`` one, and per-endpoint ones that override it (stored with scope ``*`` and the endpoint
name, :mod:`bootstrap.store.bootstrap_configs`). ``default`` in a path, a filter or ``after`` always
means the default, so an endpoint literally named ``default`` cannot have its own configuration.

Bootstrap sessions are the read-only record of every bootstrap the server ran, newest first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..bootstrap_plan import BootstrapConfig, SecurityModeName
from ..errors import BadRequest, NotFound, PreconditionFailed
from ..store import bootstrap_configs
from ..store.bootstrap_configs import DEFAULT_SCOPE, StoredConfig
from . import queries
from .context import Resource, context
from .fields import Body, Bool, JsonSchema, Prop, Query, QuerySpec, Str, ValueSpec
from .http import (
    DATE_TIME,
    NO_CONTENT,
    ListParams,
    check_if_match,
    decode_query,
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

CONFIG_TAG = "Bootstrap configurations"
CONFIGS = "/v3/bootstrap-configurations"
SESSION_TAG = "Bootstrap sessions"
SESSIONS = "/v3/bootstrap-sessions"

#: The path segment (and ``scope`` value) naming the default configuration.
DEFAULT = "default"
MAX_SCOPE = 128
SECURITY_MODES = ("est", "certificate", "psk", "nosec")
MAX_PEM = 100_000
MAX_URI = 2048
INT32_MAX = 2**31 - 1
SESSION_ID_PATTERN = "^[0-9]{1,18}$"
OUTCOMES = ("success", "failed")
METHODS = ("request", "pack")


@dataclass(frozen=True, kw_only=True)
class Int:
    """A JSON integer within ``minimum``..``maximum`` (a number with no fractional part, as JSON Schema
    counts ``1.0`` as an integer; ``true``/``false`` are not numbers)."""

    minimum: int | None = None
    maximum: int | None = None

    def decode(self, value: Any, where: str) -> int:
        """Validate one value."""
        number: int
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, float):
            raise BadRequest("must be an integer", field=where)
        else:
            kind = "boolean" if isinstance(value, bool) else type(value).__name__
            raise BadRequest(f"must be an integer, not {_JSON_TYPES.get(kind, kind)}", field=where)
        if self.minimum is not None and number < self.minimum:
            raise BadRequest(f"must be at least {self.minimum}", field=where)
        if self.maximum is not None and number > self.maximum:
            raise BadRequest(f"must be at most {self.maximum}", field=where)
        return number

    def schema(self) -> JsonSchema:
        """The JSON Schema of this value."""
        out: JsonSchema = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


_JSON_TYPES = {"str": "string", "list": "array", "dict": "object", "NoneType": "null"}


def _int(spec: Int) -> ValueSpec:
    # Body and Prop only call decode() and schema(); fields.ValueSpec does not list Int (yet).
    return cast(ValueSpec, spec)


PUT_BODY = Body(
    "BootstrapConfigurationRequest",
    (
        Prop(
            name="server_uri",
            spec=Str(min_length=1, max_length=MAX_URI),
            required=True,
            description="LwM2M server URI (/0/x/0): coap://, coaps://, coap+tcp:// or coaps+tcp://; "
            "nosec needs a plain scheme, the other modes a secure one.",
        ),
        Prop(
            name="security_mode",
            spec=Str(enum=SECURITY_MODES),
            required=True,
            description="How the device secures the connection to the LwM2M server.",
        ),
        Prop(
            name="short_server_id",
            spec=_int(Int(minimum=1, maximum=65534)),
            description="Short Server ID (/0/x/10, /1/x/0); default 1.",
        ),
        Prop(
            name="lifetime",
            spec=_int(Int(minimum=1, maximum=INT32_MAX)),
            description="Registration lifetime in seconds (/1/x/1); default 86400.",
        ),
        Prop(
            name="binding",
            spec=Str(pattern="^[UTSNQ]{1,5}$"),
            description="Binding (/1/x/7), distinct letters of U, T, S, N, Q; must include U for a UDP URI "
            "and T for a TCP one. Default U.",
        ),
        Prop(
            name="server_certificate",
            spec=Str(min_length=1, max_length=MAX_PEM),
            nullable=True,
            description="PEM: the LwM2M server certificate or trust anchor (/0/x/4); required for est "
            "and certificate, refused for psk and nosec.",
        ),
        Prop(
            name="certificate_usage",
            spec=_int(Int(minimum=0, maximum=3)),
            nullable=True,
            description="Certificate Usage (/0/x/15), certificate modes only; absent means 3.",
        ),
        Prop(
            name="oscore",
            spec=Bool(),
            description="Security mode nosec only: each device gets its own OSCORE context (RFC 8613) in "
            "/21, linked from /0/x/17, protecting its coap:// connection; the LwM2M server gets the "
            "contexts from lwm2m-bootstrap lwm2m-oscore export. Default false.",
        ),
    ),
    description="The whole configuration: fields left out take their defaults.",
)
_FIELDS = {"server_certificate_der": "server_certificate"}
"""BootstrapConfig attribute names that differ from the request fields."""

CONFIG_LIST_QUERY = list_query(
    Query(name="scope__eq", max_length=MAX_SCOPE, description="`default` or an endpoint name."),
    Query(name="security_mode__eq", enum=SECURITY_MODES),
    after=Query(
        name="after", max_length=MAX_SCOPE, description="Scope of the last item of the previous page."
    ),
)


def _stored_scope(scope: str) -> str:
    return DEFAULT_SCOPE if scope == DEFAULT else scope


def _api_scope(scope: str) -> str:
    return DEFAULT if scope == DEFAULT_SCOPE else scope


def encode_config(stored: StoredConfig) -> dict[str, Any]:
    """``BootstrapConfiguration``."""
    config = stored.config
    pem: str | None = None
    subject: str | None = None
    if config.server_certificate_der:
        certificate = x509.load_der_x509_certificate(bytes(config.server_certificate_der))
        pem = certificate.public_bytes(Encoding.PEM).decode()
        subject = certificate.subject.rfc4514_string()
    return {
        "scope": _api_scope(stored.scope),
        "server_uri": config.server_uri,
        "security_mode": config.security_mode,
        "short_server_id": config.short_server_id,
        "lifetime": config.lifetime,
        "binding": config.binding,
        "server_certificate": pem,
        "server_certificate_subject": subject,
        "certificate_usage": config.certificate_usage,
        "oscore": config.oscore,
        "created_at": timestamp(stored.created_at),
        "updated_at": timestamp(stored.updated_at),
        "etag": stored.etag,
        "object": "bootstrap-configuration",
    }


def _scope(request: web.Request) -> str:
    """The stored scope named by the path (``default`` is ``*``; ``*`` itself names nothing)."""
    value = path_param(request, "scope")
    if value == DEFAULT_SCOPE or len(value) > MAX_SCOPE:
        raise NotFound(f"no such item {value!r}")
    return _stored_scope(value)


def _certificate_der(pem: str | None) -> bytes | None:
    if pem is None:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise BadRequest("is not a PEM certificate", field="server_certificate") from None
    if len(certificates) != 1:
        raise BadRequest("must be exactly one PEM certificate", field="server_certificate")
    return certificates[0].public_bytes(Encoding.DER)


def _config(body: dict[str, Any]) -> BootstrapConfig:
    """The validated configuration of a request body; 400 naming the request field."""
    config = BootstrapConfig(
        server_uri=body["server_uri"],
        security_mode=cast(SecurityModeName, body["security_mode"]),
        short_server_id=body.get("short_server_id", 1),
        lifetime=body.get("lifetime", 86400),
        binding=body.get("binding", "U"),
        server_certificate_der=_certificate_der(body.get("server_certificate")),
        certificate_usage=body.get("certificate_usage"),
        oscore=body.get("oscore", False),
    )
    try:
        config.validate()
    except BadRequest as exc:
        field = _FIELDS.get(exc.field or "", exc.field)
        message = exc.message
        for old, new in _FIELDS.items():
            message = message.replace(old, new)
        raise BadRequest(message, field=field) from None
    return config


async def list_configs(request: web.Request) -> web.Response:
    """GET: the default first, then endpoints in byte order; ``after`` is a scope."""
    values = decode_query(request, CONFIG_LIST_QUERY)
    params = ListParams.of(values)
    scope = values.get("scope__eq")
    filters = queries.BootstrapConfigFilters(
        scope=_stored_scope(scope) if scope is not None else None,
        security_mode=values.get("security_mode__eq"),
    )
    after = queries.scope_key(_stored_scope(params.after)) if params.after is not None else None
    pool = context(request).pool
    rows = await queries.bootstrap_config_page(
        pool, filters, queries.Page(after, params.limit, params.descending)
    )
    total = await queries.bootstrap_config_count(pool, filters) if params.include_total else None
    return list_response(
        [encode_config(r) for r in rows[: params.limit]],
        params,
        has_more=len(rows) > params.limit,
        total=total,
    )


async def get_config(request: web.Request) -> web.Response:
    """GET one configuration: ``default`` or an endpoint's own (not the one it would get)."""
    return resource(encode_config(await bootstrap_configs.get(context(request).pool, _scope(request))))


async def put_config(request: web.Request) -> web.Response:
    """PUT: create (201) or replace (200) a configuration, validated as a whole first."""
    scope = _scope(request)
    set_target(scope)
    config = _config(await read_body(request, PUT_BODY))
    async with context(request).pool.acquire() as conn, conn.transaction():
        current = await queries.bootstrap_config_row(conn, scope, for_update=True)
        if request.headers.get("If-Match") is not None:
            if current is None:
                raise PreconditionFailed(f"If-Match given but there is no configuration for {scope!r}")
            check_if_match(request, current.etag, "bootstrap configuration")
        stored = await bootstrap_configs.put(conn, scope, config)
    return resource(encode_config(stored), status=200 if current is not None else 201)


async def delete_config(request: web.Request) -> web.Response:
    """DELETE a configuration (endpoints then fall back to the default)."""
    scope = _scope(request)
    set_target(scope)
    async with context(request).pool.acquire() as conn, conn.transaction():
        current = await queries.bootstrap_config_row(conn, scope, for_update=True)
        if current is None:
            raise NotFound(f"no bootstrap configuration for {_api_scope(scope)!r}")
        check_if_match(request, current.etag, "bootstrap configuration")
        await bootstrap_configs.delete(conn, scope)
    return no_content()


# --- bootstrap sessions ------------------------------------------------------------------------

_ORDER = Query(name="order", enum=("ASC", "DESC"), description="Order by id; default DESC (newest first).")
SESSION_LIST_QUERY = QuerySpec(
    tuple(
        _ORDER if p.name == "order" else p
        for p in list_query(
            Query(name="endpoint__eq", max_length=MAX_SCOPE),
            Query(name="outcome__eq", enum=OUTCOMES),
            Query(name="method__eq", enum=METHODS, description="request: POST /bs; pack: GET /bspack."),
            after=Query(
                name="after",
                pattern=SESSION_ID_PATTERN,
                description="Id of the last item of the previous page.",
            ),
        ).params
    )
)


def encode_session(record: asyncpg.Record) -> dict[str, Any]:
    """``BootstrapSession``."""
    return {
        "id": str(record["id"]),
        "endpoint": record["endpoint"],
        "method": record["method"],
        "transport": record["transport"],
        "security_mode": record["security_mode"],
        "outcome": record["outcome"],
        "reason": record["reason"],
        "started_at": timestamp(record["started_at"]),
        "ended_at": timestamp(record["ended_at"]),
        "object": "bootstrap-session",
    }


async def list_sessions(request: web.Request) -> web.Response:
    """GET recorded bootstraps by id, newest first unless ``order=ASC``."""
    values = decode_query(request, SESSION_LIST_QUERY)
    params = dataclasses.replace(ListParams.of(values), descending=values.get("order", "DESC") == "DESC")
    filters = queries.BootstrapSessionFilters(
        endpoint=values.get("endpoint__eq"),
        outcome=values.get("outcome__eq"),
        method=values.get("method__eq"),
    )
    after = int(params.after) if params.after is not None else None
    pool = context(request).pool
    rows = await queries.bootstrap_session_page(
        pool, filters, queries.Page(after, params.limit, params.descending)
    )
    total = await queries.bootstrap_session_count(pool, filters) if params.include_total else None
    return list_response(
        [encode_session(r) for r in rows[: params.limit]],
        params,
        has_more=len(rows) > params.limit,
        total=total,
    )


async def get_session(request: web.Request) -> web.Response:
    """GET one recorded bootstrap (immutable: no entity tag)."""
    session_id = int(path_param(request, pattern=SESSION_ID_PATTERN))
    return web.json_response(
        encode_session(await queries.bootstrap_session_row(context(request).pool, session_id))
    )


def add_config_routes(router: web.UrlDispatcher) -> None:
    """Register the configuration handlers."""
    router.add_get(CONFIGS, list_configs, allow_head=False)
    router.add_get(CONFIGS + "/{scope}", get_config, allow_head=False)
    router.add_put(CONFIGS + "/{scope}", put_config)
    router.add_delete(CONFIGS + "/{scope}", delete_config)


def add_session_routes(router: web.UrlDispatcher) -> None:
    """Register the session handlers."""
    router.add_get(SESSIONS, list_sessions, allow_head=False)
    router.add_get(SESSIONS + "/{id}", get_session, allow_head=False)


_NULLABLE_STRING: JsonSchema = {"type": ["string", "null"]}
_CONFIG_PROPERTIES: dict[str, Any] = {
    "scope": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_SCOPE,
        "description": "`default` or the endpoint name.",
    },
    "server_uri": {"type": "string"},
    "security_mode": {"enum": list(SECURITY_MODES)},
    "short_server_id": Int(minimum=1, maximum=65534).schema(),
    "lifetime": Int(minimum=1, maximum=INT32_MAX).schema(),
    "binding": {"type": "string"},
    "server_certificate": {**_NULLABLE_STRING, "description": "PEM; null if none."},
    "server_certificate_subject": {
        **_NULLABLE_STRING,
        "description": "RFC 4514 subject of server_certificate.",
    },
    "certificate_usage": {"type": ["integer", "null"], "minimum": 0, "maximum": 3},
    "oscore": {"type": "boolean"},
    "created_at": DATE_TIME,
    "updated_at": DATE_TIME,
    "etag": {"type": "string"},
    "object": {"const": "bootstrap-configuration"},
}
CONFIG_SCHEMAS: dict[str, Any] = {
    PUT_BODY.schema_name: PUT_BODY.schema(),
    "BootstrapConfiguration": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_CONFIG_PROPERTIES),
        "properties": _CONFIG_PROPERTIES,
    },
    "BootstrapConfigurationList": list_schema("BootstrapConfiguration"),
}
_SESSION_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": SESSION_ID_PATTERN},
    "endpoint": {"type": "string"},
    "method": {"enum": list(METHODS)},
    "transport": {
        "type": "string",
        "description": "URI scheme the device used: coap, coaps, coap+tcp, coaps+tcp.",
    },
    "security_mode": {
        **_NULLABLE_STRING,
        "description": "Mode of the configuration used, if one was (nosec+oscore: nosec under OSCORE).",
    },
    "outcome": {"enum": list(OUTCOMES)},
    "reason": {**_NULLABLE_STRING, "description": "Why it failed."},
    "started_at": DATE_TIME,
    "ended_at": DATE_TIME,
    "object": {"const": "bootstrap-session"},
}
SESSION_SCHEMAS: dict[str, Any] = {
    "BootstrapSession": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_SESSION_PROPERTIES),
        "properties": _SESSION_PROPERTIES,
    },
    "BootstrapSessionList": list_schema("BootstrapSession"),
}

_SCOPE = {
    **id_param("scope", description="`default`, or an endpoint client name (1-128 characters)."),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_SCOPE},
}
CONFIG_PATHS: dict[str, Any] = {
    CONFIGS: {
        "get": operation(
            "List bootstrap configurations",
            tag=CONFIG_TAG,
            operation_id="listBootstrapConfigurations",
            query=CONFIG_LIST_QUERY,
            responses={"200": ok("BootstrapConfigurationList", etag=False)},
            description="The default first, then endpoints in byte order; `after` is a scope.",
        ),
    },
    CONFIGS + "/{scope}": {
        "parameters": [_SCOPE],
        "get": operation(
            "Get a bootstrap configuration",
            tag=CONFIG_TAG,
            operation_id="getBootstrapConfiguration",
            responses={"200": ok("BootstrapConfiguration")},
            description="Exactly this scope's configuration (an endpoint without one gets the default).",
        ),
        "put": operation(
            "Create or replace a bootstrap configuration",
            tag=CONFIG_TAG,
            operation_id="putBootstrapConfiguration",
            body=PUT_BODY,
            if_match_header=True,
            responses={
                "200": ok("BootstrapConfiguration", "Replaced"),
                "201": ok("BootstrapConfiguration", "Created"),
            },
            description="Validated as a whole (URI scheme against the security mode, binding, server "
            "certificate); 400 names the field.",
        ),
        "delete": operation(
            "Delete a bootstrap configuration",
            tag=CONFIG_TAG,
            operation_id="deleteBootstrapConfiguration",
            if_match_header=True,
            responses={"204": NO_CONTENT},
            description="Endpoints without their own configuration cannot bootstrap while there is no "
            "default.",
        ),
    },
}
SESSION_PATHS: dict[str, Any] = {
    SESSIONS: {
        "get": operation(
            "List recorded bootstraps",
            tag=SESSION_TAG,
            operation_id="listBootstrapSessions",
            query=SESSION_LIST_QUERY,
            responses={"200": ok("BootstrapSessionList", etag=False)},
            description="By id, newest first unless `order=ASC`.",
        ),
    },
    SESSIONS + "/{id}": {
        "parameters": [id_param(pattern=SESSION_ID_PATTERN, description="Session id.")],
        "get": operation(
            "Get a recorded bootstrap",
            tag=SESSION_TAG,
            operation_id="getBootstrapSession",
            responses={"200": ok("BootstrapSession", etag=False)},
        ),
    },
}

CONFIG_RESOURCE = Resource(
    tag=CONFIG_TAG,
    description="The LwM2M server account devices are given when they bootstrap: a default and "
    "per-endpoint overrides.",
    add_routes=add_config_routes,
    paths=CONFIG_PATHS,
    schemas=CONFIG_SCHEMAS,
)
SESSION_RESOURCE = Resource(
    tag=SESSION_TAG,
    description="The record of every bootstrap and its outcome (read-only).",
    add_routes=add_session_routes,
    paths=SESSION_PATHS,
    schemas=SESSION_SCHEMAS,
)
