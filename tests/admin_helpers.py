"""An admin API client for tests that checks every answer against the served OpenAPI document.

:class:`Api` sends a request with an API key, asserts the status, and validates the JSON body
against the schema the document gives for that operation and status (the ``default`` error schema
for errors), so every test also checks that the document matches the implementation. It keeps every
response body it saw, for the credential-leak test.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import jsonschema_rs
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from bootstrap.admin import create_app
from bootstrap.admin import keys as api_keys
from bootstrap.issuer_service import IssuerService
from bootstrap.secretbox import SecretBox

_DEFAULT = object()


@dataclass
class Answer:
    """One response: status, headers and parsed JSON body (``None`` if empty)."""

    status: int
    headers: CIMultiDict[str]
    body: Any
    text: str


@dataclass
class Api:
    """A test client bound to one API key."""

    client: TestClient[Any, Any]
    key: str
    document: dict[str, Any]
    seen: list[str] = field(default_factory=list)

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        candidates = []
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path) and method.lower() in item:
                candidates.append((template.count("{"), item[method.lower()]))
        return min(candidates, key=lambda c: c[0])[1] if candidates else None

    def _schema_for(self, operation: dict[str, Any], status: int) -> dict[str, Any] | None:
        response = operation["responses"].get(str(status)) or operation["responses"]["default"]
        if "$ref" in response:
            response = self.document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        content = response.get("content", {}).get("application/json")
        return None if content is None else dict(content["schema"])

    def validate(self, method: str, path: str, answer: Answer) -> None:
        """Assert that ``answer`` is what the document says ``method path`` returns."""
        operation = self._operation(method, path.split("?")[0])
        if operation is None:
            assert answer.status in (404, 405), f"{method} {path} is not documented"
            schema: dict[str, Any] | None = {"$ref": "#/components/schemas/Error"}
        else:
            schema = self._schema_for(operation, answer.status)
            if str(answer.status) not in operation["responses"]:
                assert answer.status >= 400, f"{method} {path}: undocumented status {answer.status}"
        if schema is None:
            assert answer.body is None, f"{method} {path}: {answer.status} should have no body"
            return
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": self.document["components"]})
        errors = [str(e) for e in validator.iter_errors(answer.body)]
        assert not errors, f"{method} {path} -> {answer.status} contradicts the document: {errors}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        expect: int,
        json_body: Any = _DEFAULT,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        key: Any = _DEFAULT,
    ) -> Answer:
        """Send, assert ``expect``, validate against the document, return the answer."""
        sent_headers = dict(headers or {})
        use_key = self.key if key is _DEFAULT else key
        if use_key is not None:
            sent_headers.setdefault("Authorization", f"Bearer {use_key}")
        kwargs: dict[str, Any] = {"headers": sent_headers}
        if json_body is not _DEFAULT:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        response: ClientResponse = await self.client.request(method, path, **kwargs)
        text = await response.text()
        self.seen.append(text)
        body = json.loads(text) if text and response.content_type == "application/json" else None
        answer = Answer(response.status, CIMultiDict(response.headers), body, text)
        assert answer.status == expect, f"{method} {path}: expected {expect}, got {answer.status}: {text}"
        if response.content_type == "application/json" or not text:
            self.validate(method, path, answer)
        operation = self._operation(method, path.split("?")[0])
        documented = operation is not None and str(answer.status) in operation["responses"]
        if answer.status >= 400 and not documented:
            assert answer.body["code"] == answer.status and answer.body["object"] == "error"
            assert answer.body["request_id"] == answer.headers["X-Request-Id"]
        elif isinstance(answer.body, dict) and "etag" in answer.body and answer.body.get("object") != "list":
            assert answer.headers["ETag"] == f'"{answer.body["etag"]}"'
        return answer

    async def get(self, path: str, expect: int = 200, **kwargs: Any) -> Answer:
        """GET."""
        return await self.call("GET", path, expect=expect, **kwargs)

    async def post(self, path: str, json_body: Any, expect: int = 201, **kwargs: Any) -> Answer:
        """POST JSON."""
        return await self.call("POST", path, expect=expect, json_body=json_body, **kwargs)

    async def put(self, path: str, json_body: Any, expect: int = 200, **kwargs: Any) -> Answer:
        """PUT JSON."""
        return await self.call("PUT", path, expect=expect, json_body=json_body, **kwargs)

    async def delete(self, path: str, expect: int = 204, **kwargs: Any) -> Answer:
        """DELETE."""
        return await self.call("DELETE", path, expect=expect, **kwargs)


@asynccontextmanager
async def admin_api(
    pool: asyncpg.Pool,
    box: SecretBox,
    *,
    key_name: str,
    issuers: IssuerService | None = None,
    **app_options: Any,
) -> AsyncIterator[Api]:
    """A running admin application on loopback and an :class:`Api` with a fresh key named ``key_name``."""
    app = create_app(pool=pool, box=box, issuers=issuers or IssuerService(pool, box), **app_options)
    _, plaintext = await api_keys.create(pool, key_name)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        document = await (await client.get("/v3/openapi.json")).json()
        yield Api(client, plaintext, document)
    finally:
        await client.close()
