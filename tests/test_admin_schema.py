"""Property-based conformance of the admin API to its own OpenAPI document (schemathesis).

A bounded, derandomized run: for every operation, positive and negative requests generated from
``/v3/openapi.json`` are sent with a valid API key to a real server on loopback (its own thread,
event loop and pool), and every answer must be no 5xx, a documented status, the documented content
type and a body that fits the documented schema; requests that break the schema must be refused.

``verify`` and ``revoke`` are left out: they contact the CA an issuer names, and a fuzzed issuer
could name any host.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from bootstrap.admin import DEFAULT_RESOURCES, bound_port, create_app, keys, start_admin
from bootstrap.admin.openapi import build_document
from bootstrap.issuer_service import IssuerService
from bootstrap.secretbox import SecretBox

#: Examples per operation and generation mode; the whole run stays well under a minute.
MAX_EXAMPLES = 25
#: Operations that reach out to third-party CAs.
EXCLUDED = ("verifyCertificateIssuer", "revokeIssuedCertificate")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

schema = schemathesis.openapi.from_dict(build_document(DEFAULT_RESOURCES)).exclude(
    operation_id=list(EXCLUDED)
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    # The key is added to every request below; security parameters are not fuzzed.
    with_security_parameters=False,
)


@dataclass
class RunningAdmin:
    """The admin API served from a background thread."""

    base_url: str
    api_key: str
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event


async def _remove_what_the_run_created(pool: asyncpg.Pool, key_id: str) -> None:
    """Delete what fuzzed requests created (found through the admin audit), so the shared test
    database holds no junk services, issuers, trust anchors, devices or bootstrap configurations
    afterwards (a bootstrap configuration's audit target is its stored scope, ``*`` for the default)."""
    rows = await pool.fetch(
        "SELECT path, target_id FROM admin_audit WHERE api_key_id = $1 AND status = 201", key_id
    )
    created: dict[str, list[str]] = {}
    for row in rows:
        collection = "/".join(row["path"].split("/")[:3])
        created.setdefault(collection, []).append(row["target_id"])
    issuers = created.get("/v3/certificate-issuers", [])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM certificate_issuer_configurations"
            " WHERE id = ANY($1::text[]) AND reference <> 'LWM2M'",
            created.get("/v3/certificate-issuer-configurations", []),
        )
        await conn.execute(
            "UPDATE certificate_issuer_configurations SET certificate_issuer_id = NULL"
            " WHERE certificate_issuer_id = ANY($1::text[])",
            issuers,
        )
        await conn.execute("DELETE FROM certificate_issuers WHERE id = ANY($1::text[])", issuers)
        await conn.execute(
            "DELETE FROM trusted_certificates WHERE id = ANY($1::text[])",
            created.get("/v3/trusted-certificates", []),
        )
        await conn.execute(
            "DELETE FROM device_credentials WHERE endpoint = ANY($1::text[])",
            created.get("/v3/device-credentials", []),
        )
        await conn.execute(
            "DELETE FROM bootstrap_configs WHERE scope = ANY($1::text[])",
            created.get("/v3/bootstrap-configurations", []),
        )
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now()"
            " WHERE revoked_at IS NULL AND (id = ANY($1::text[]) OR id = $2)",
            created.get("/v3/api-keys", []),
            key_id,
        )


@pytest.fixture(scope="module")
def admin_server(pool: asyncpg.Pool, database_url: str, master_key_b64: str) -> Iterator[RunningAdmin]:
    """A real admin server on loopback; requests (schemathesis is synchronous) need their own loop."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        own_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            box = SecretBox(base64.b64decode(master_key_b64))
            created, key = await keys.create(own_pool, f"schemathesis-{uuid.uuid4().hex[:8]}")
            key_id = created.id
            app = create_app(pool=own_pool, box=box, issuers=IssuerService(own_pool, box))
            runner = await start_admin(app, "127.0.0.1", 0, None)
            stop = asyncio.Event()
            found["admin"] = RunningAdmin(
                f"http://127.0.0.1:{bound_port(runner)}", key, asyncio.get_running_loop(), stop
            )
            ready.set()
            await stop.wait()
            await runner.cleanup()
            await _remove_what_the_run_created(own_pool, key_id)
        finally:
            await own_pool.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surface start-up failures in the test
            found["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="admin-schema-server", daemon=True)
    thread.start()
    assert ready.wait(60), "admin server did not start"
    if "error" in found:
        raise found["error"]
    admin: RunningAdmin = found["admin"]
    yield admin
    admin.loop.call_soon_threadsafe(admin.stop.set)
    thread.join(30)
    if "error" in found:  # the clean-up failed
        raise found["error"]


def test_document_is_what_the_server_serves(admin_server: RunningAdmin) -> None:
    """The schema under test is the one the server publishes."""
    import requests

    served = requests.get(f"{admin_server.base_url}/v3/openapi.json", timeout=10).json()
    assert served == build_document(DEFAULT_RESOURCES)
    assert {"verifyCertificateIssuer", "revokeIssuedCertificate"} <= {
        op["operationId"] for item in served["paths"].values() for op in item.values() if isinstance(op, dict)
    }


#: Wall-clock bound of the whole fuzzing run; cases after it are not sent.
TIME_BUDGET_SECONDS = 180.0
_STARTED: dict[str, float] = {}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_document(case: schemathesis.Case, admin_server: RunningAdmin) -> None:
    """No 5xx, nothing undocumented, schema-valid bodies, schema-invalid requests refused."""
    if time.monotonic() - _STARTED.setdefault("at", time.monotonic()) > TIME_BUDGET_SECONDS:
        return
    case.call_and_validate(
        base_url=admin_server.base_url,
        headers={"Authorization": f"Bearer {admin_server.api_key}"},
        checks=CHECKS,
        timeout=30,
    )
