"""Decoding requests and encoding responses the way every admin handler does.

Lists use the Pelion envelope (``object: "list"``, ``data``, ``has_more``, ``limit``, ``after``,
``order``, ``total_count`` on request) with keyset pagination: ``after`` is the id of the last item
of the previous page and items are ordered by id. Single resources carry an ``ETag`` header (the
quoted ``etag`` of the body), and ``If-Match`` is read back for PUT and DELETE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from ..errors import BadRequest, NotFound
from .fields import Body, JsonSchema, Query, QuerySpec, check_text
from .keys import ApiKey


@dataclass
class RequestState:
    """What the middlewares and the handler of one request share (kept in a context variable:
    each aiohttp request runs in its own task, so requests never see each other's state)."""

    request_id: str
    api_key: ApiKey | None = None
    """The authenticated key (``None`` on public paths)."""
    audit_target: str | None = None
    """Id of the object a change applies to, named by the handler for the audit."""


_STATE: ContextVar[RequestState | None] = ContextVar("lwm2m_admin_request", default=None)


def request_state() -> RequestState:
    """The state of the current request (an empty one outside any request)."""
    return _STATE.get() or RequestState(request_id="")


def begin_request(request_id: str) -> Token[RequestState | None]:
    """Start the state of a new request; pass the token to :func:`end_request`."""
    return _STATE.set(RequestState(request_id=request_id))


def end_request(token: Token[RequestState | None]) -> None:
    """Forget the state of the request started with ``token``."""
    _STATE.reset(token)


MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 2, 1000, 50

LIST_PARAMS = (
    Query(
        name="limit",
        kind="integer",
        description=f"Page size, {MIN_LIMIT}-{MAX_LIMIT} (others are clamped); default {DEFAULT_LIMIT}.",
    ),
    Query(name="after", max_length=200, description="Id of the last item of the previous page."),
    Query(name="order", enum=("ASC", "DESC"), description="Order by id; default ASC."),
    Query(name="include", enum=("total_count",), description="`total_count` adds the number of matches."),
)

T = TypeVar("T")


def list_query(*filters: Query, after: Query | None = None) -> QuerySpec:
    """The query spec of a list operation: the paging parameters (``after`` replaced if given) plus
    ``filters``."""
    common = tuple(after if after is not None and p.name == "after" else p for p in LIST_PARAMS)
    return QuerySpec((*common, *filters))


@dataclass(frozen=True)
class ListParams:
    """Paging parameters of one list request."""

    limit: int
    after: str | None
    descending: bool
    include_total: bool

    @classmethod
    def of(cls, values: dict[str, Any]) -> ListParams:
        """From decoded query values (see :func:`list_query`)."""
        limit = values.get("limit", DEFAULT_LIMIT)
        return cls(
            limit=min(max(int(limit), MIN_LIMIT), MAX_LIMIT),
            after=values.get("after"),
            descending=values.get("order") == "DESC",
            include_total=values.get("include") == "total_count",
        )


def decode_query(request: web.Request, spec: QuerySpec) -> dict[str, Any]:
    """Decode the query string of ``request``; unknown or repeated parameters are refused."""
    return spec.decode(request.query, list(request.query.items()))


async def read_body(request: web.Request, spec: Body) -> dict[str, Any]:
    """Parse and validate the JSON body; malformed JSON is a 400 naming the body."""
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("a JSON request body is required", field="body")
    try:
        parsed = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8", field="body") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON in the request body: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            field="body",
        ) from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply", field="body") from None
    return spec.decode(parsed)


def path_param(request: web.Request, name: str = "id", *, pattern: str | None = None) -> str:
    """A path parameter; values that cannot name anything (NUL, too long, bad shape) are a 404."""
    value = request.match_info[name]
    try:
        check_text(value, name)
    except BadRequest:
        raise NotFound(f"no such item {value!r}") from None
    if len(value) > 200 or (pattern is not None and not re.fullmatch(pattern, value)):
        raise NotFound(f"no such item {value!r}")
    return value


def if_match(request: web.Request) -> str | None:
    """The ``If-Match`` entity tag without quotes (``None`` if absent or ``*``)."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def check_if_match(request: web.Request, current_etag: str, what: str) -> None:
    """412 unless ``If-Match`` is absent or names ``current_etag``."""
    from ..errors import PreconditionFailed

    wanted = if_match(request)
    if wanted is not None and wanted != current_etag:
        raise PreconditionFailed(f"the {what} was changed by someone else (ETag mismatch)")


def set_target(target_id: str) -> None:
    """Name the object the current change applies to, for the admin audit."""
    request_state().audit_target = target_id


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC with millisecond precision, or ``None``."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def derived_etag(*parts: object) -> str:
    """An entity tag for rows without one: a digest of what identifies their version."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def resource(body: dict[str, Any], *, status: int = 200) -> web.Response:
    """A single resource as JSON with its ``ETag``."""
    return web.json_response(body, status=status, headers={"ETag": f'"{body["etag"]}"'})


def no_content() -> web.Response:
    """204."""
    return web.Response(status=204)


def paginate(items: Sequence[T], key: Callable[[T], str], params: ListParams) -> tuple[list[T], bool]:
    """Keyset-paginate an in-memory list by ``key`` (the id); returns (page, has_more)."""
    ordered = sorted(items, key=key, reverse=params.descending)
    if params.after is not None:
        after = params.after
        ordered = [i for i in ordered if (key(i) < after if params.descending else key(i) > after)]
    return list(ordered[: params.limit]), len(ordered) > params.limit


def list_response(
    data: list[dict[str, Any]], params: ListParams, *, has_more: bool, total: int | None
) -> web.Response:
    """The list envelope."""
    body: dict[str, Any] = {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "limit": params.limit,
        "after": params.after,
        "order": "DESC" if params.descending else "ASC",
    }
    if params.include_total:
        body["total_count"] = total if total is not None else len(data)
    return web.json_response(body)


# --- OpenAPI fragments ---------------------------------------------------------------------------

ERROR_REF = {"$ref": "#/components/responses/Error"}


def json_content(schema: JsonSchema) -> JsonSchema:
    """``content`` for an ``application/json`` body."""
    return {"application/json": {"schema": schema}}


def ref(name: str) -> JsonSchema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def operation(
    summary: str,
    *,
    tag: str,
    operation_id: str,
    responses: dict[str, JsonSchema],
    body: Body | None = None,
    query: QuerySpec | None = None,
    if_match_header: bool = False,
    description: str = "",
) -> JsonSchema:
    """An OpenAPI operation object; every operation also documents the error object as ``default``."""
    out: JsonSchema = {"summary": summary, "operationId": operation_id, "tags": [tag]}
    if description:
        out["description"] = description
    parameters = query.parameters() if query else []
    if if_match_header:
        parameters.append({"$ref": "#/components/parameters/IfMatch"})
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {"required": True, "content": json_content(ref(body.schema_name))}
    out["responses"] = {**responses, "default": ERROR_REF}
    return out


def ok(schema_name: str, description: str = "OK", *, etag: bool = True) -> JsonSchema:
    """A JSON response of a component schema, with an ``ETag`` header if ``etag``."""
    out: JsonSchema = {"description": description, "content": json_content(ref(schema_name))}
    if etag:
        out["headers"] = {"ETag": {"$ref": "#/components/headers/ETag"}}
    return out


NO_CONTENT: JsonSchema = {"description": "Done; no body."}


def list_schema(item: str) -> JsonSchema:
    """The list envelope around ``item`` objects."""
    return {
        "type": "object",
        "required": ["object", "data", "has_more", "limit", "after", "order"],
        "additionalProperties": False,
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref(item)},
            "has_more": {"type": "boolean"},
            "limit": {"type": "integer", "minimum": MIN_LIMIT, "maximum": MAX_LIMIT},
            "after": {"type": ["string", "null"]},
            "order": {"enum": ["ASC", "DESC"]},
            "total_count": {"type": "integer", "minimum": 0},
        },
    }


def id_param(name: str = "id", *, pattern: str | None = None, description: str = "") -> JsonSchema:
    """An OpenAPI path parameter."""
    schema: JsonSchema = {"type": "string", "minLength": 1, "maxLength": 200}
    if pattern is not None:
        schema["pattern"] = pattern
    out: JsonSchema = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        out["description"] = description
    return out


DATE_TIME: JsonSchema = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: JsonSchema = {"type": ["string", "null"], "format": "date-time"}
