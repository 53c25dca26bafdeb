"""Declarative request specs: one description of each body and query parameter, used both to decode
requests and to write the OpenAPI document, so the two cannot drift apart.

Decoding is strict: unknown body fields or query parameters, wrong JSON types, values over a length
limit, outside an enum or not matching a pattern are refused with :class:`~bootstrap.errors.BadRequest`
naming the field. Strings must also be storable text (no NUL, no lone surrogates), which Postgres
would otherwise refuse with an internal error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest

JsonSchema = dict[str, Any]


def check_text(value: str, where: str) -> str:
    """Return ``value`` if Postgres can store it as text; else 400 naming ``where``."""
    if "\x00" in value:
        raise BadRequest("must not contain NUL characters", field=where)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("must be valid Unicode text", field=where) from None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(frozen=True, kw_only=True)
class Str:
    """A JSON string with optional length, pattern and enum constraints."""

    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None
    """A regular expression the whole value must match (written with ``^...$``)."""
    enum: tuple[str, ...] | None = None
    format: str | None = None
    """OpenAPI ``format`` (documentation only)."""

    def decode(self, value: Any, where: str) -> str:
        """Validate one value."""
        if not isinstance(value, str):
            raise BadRequest(f"must be a string, not {_type_name(value)}", field=where)
        check_text(value, where)
        if self.enum is not None and value not in self.enum:
            raise BadRequest(f"must be one of {', '.join(self.enum)}", field=where)
        if len(value) < self.min_length:
            raise BadRequest(
                "must not be empty"
                if self.min_length == 1
                else f"must be at least {self.min_length} characters",
                field=where,
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise BadRequest(f"must be at most {self.max_length} characters", field=where)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise BadRequest(f"must match {self.pattern}", field=where)
        return value

    def schema(self) -> JsonSchema:
        """The JSON Schema of this value."""
        out: JsonSchema = {"type": "string"}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.format is not None:
            out["format"] = self.format
        return out


@dataclass(frozen=True, kw_only=True)
class StrMap:
    """A JSON object whose values are all strings (issuer attributes and credentials).

    Which keys are allowed depends on other fields (the issuer type); that is checked by the layer
    that knows (the CA backend). ``variants`` only documents the allowed shapes.
    """

    max_value_length: int | None = None
    variants: tuple[str, ...] = ()
    """Names of component schemas describing the allowed shapes (``anyOf`` in the document)."""

    def decode(self, value: Any, where: str) -> dict[str, str]:
        """Validate one object of strings."""
        if not isinstance(value, dict):
            raise BadRequest(f"must be an object, not {_type_name(value)}", field=where)
        out: dict[str, str] = {}
        for key, item in value.items():
            check_text(key, where)
            inner = f"{where}.{key}"
            if not isinstance(item, str):
                raise BadRequest(f"must be a string, not {_type_name(item)}", field=inner)
            check_text(item, inner)
            if self.max_value_length is not None and len(item) > self.max_value_length:
                raise BadRequest(f"must be at most {self.max_value_length} characters", field=inner)
            out[key] = item
        return out

    def schema(self) -> JsonSchema:
        """The JSON Schema of this value."""
        if self.variants:
            return {"anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in self.variants]}
        values: JsonSchema = {"type": "string"}
        if self.max_value_length is not None:
            values["maxLength"] = self.max_value_length
        return {"type": "object", "additionalProperties": values}


@dataclass(frozen=True, kw_only=True)
class Bool:
    """A JSON boolean."""

    def decode(self, value: Any, where: str) -> bool:
        """Validate one value."""
        if not isinstance(value, bool):
            raise BadRequest(f"must be a boolean, not {_type_name(value)}", field=where)
        return value

    def schema(self) -> JsonSchema:
        """The JSON Schema of this value."""
        return {"type": "boolean"}


ValueSpec = Str | StrMap | Bool


@dataclass(frozen=True, kw_only=True)
class Prop:
    """One property of a request body."""

    name: str
    spec: ValueSpec
    required: bool = False
    nullable: bool = False
    write_only: bool = False
    description: str = ""


@dataclass(frozen=True)
class Body:
    """A JSON request body: an object with exactly these properties."""

    schema_name: str
    """Component name in the OpenAPI document."""
    props: tuple[Prop, ...]
    description: str = ""

    def decode(self, body: Any) -> dict[str, Any]:
        """Validate a parsed JSON body; returns only the properties present (``None`` if null)."""
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, not {_type_name(body)}", field="body")
        known = {p.name: p for p in self.props}
        for key in body:
            if key not in known:
                check_text(key, "body")
                raise BadRequest(f"unknown field; expected one of {', '.join(known)}", field=key)
        out: dict[str, Any] = {}
        for prop in self.props:
            if prop.name not in body:
                if prop.required:
                    raise BadRequest("required", field=prop.name)
                continue
            value = body[prop.name]
            if value is None:
                if not prop.nullable:
                    raise BadRequest("must not be null", field=prop.name)
                out[prop.name] = None
            else:
                out[prop.name] = prop.spec.decode(value, prop.name)
        return out

    def schema(self) -> JsonSchema:
        """The JSON Schema of the body."""
        properties: JsonSchema = {}
        for prop in self.props:
            value = prop.spec.schema()
            if prop.nullable:
                value = _nullable(value)
            if prop.description:
                value = {**value, "description": prop.description}
            if prop.write_only:
                value = {**value, "writeOnly": True}
            properties[prop.name] = value
        out: JsonSchema = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [p.name for p in self.props if p.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out


def _nullable(schema: JsonSchema) -> JsonSchema:
    if "anyOf" in schema:
        return {"anyOf": [*schema["anyOf"], {"type": "null"}]}
    if "enum" in schema:
        return {**schema, "type": [schema["type"], "null"], "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


# --- query parameters ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Query:
    """One query parameter."""

    name: str
    kind: str = "string"
    """``string``, ``integer`` or ``boolean`` (``true``/``false``)."""
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    description: str = ""

    def decode(self, raw: str) -> str | int | bool:
        """Parse one value."""
        check_text(raw, self.name)
        if self.kind == "integer":
            if not re.fullmatch(r"-?[0-9]{1,30}", raw):
                raise BadRequest("must be an integer", field=self.name)
            return int(raw)
        if self.kind == "boolean":
            if raw not in ("true", "false"):
                raise BadRequest("must be true or false", field=self.name)
            return raw == "true"
        if self.enum is not None and raw not in self.enum:
            raise BadRequest(f"must be one of {', '.join(self.enum)}", field=self.name)
        if self.max_length is not None and len(raw) > self.max_length:
            raise BadRequest(f"must be at most {self.max_length} characters", field=self.name)
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise BadRequest(f"must match {self.pattern}", field=self.name)
        return raw

    def parameter(self) -> JsonSchema:
        """The OpenAPI parameter object."""
        schema: JsonSchema = {"type": self.kind}
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        out: JsonSchema = {"name": self.name, "in": "query", "required": False, "schema": schema}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class QuerySpec:
    """The query parameters an operation accepts; anything else is refused."""

    params: tuple[Query, ...] = field(default=())

    def decode(self, query: Mapping[str, str], multi: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Parse ``query`` (``multi`` is every (name, value) pair, to refuse repeated parameters)."""
        known = {p.name: p for p in self.params}
        seen: set[str] = set()
        for name, _ in multi:
            if name not in known:
                check_text(name, "query")
                expected = ", ".join(known) or "none"
                raise BadRequest(f"unknown query parameter; expected one of {expected}", field=name)
            if name in seen:
                raise BadRequest("given more than once", field=name)
            seen.add(name)
        return {name: known[name].decode(query[name]) for name in seen}

    def parameters(self) -> list[JsonSchema]:
        """OpenAPI parameter objects."""
        return [p.parameter() for p in self.params]
