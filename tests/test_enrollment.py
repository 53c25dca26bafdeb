"""The signing path's failure modes: CA unavailable, back-pressure, over real Postgres and CoAP."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import asyncpg
import pytest
from aiocoap import Code, Message
from cryptography import x509
from structlog.testing import capture_logs

import ca_backends
from bootstrap import log_context
from bootstrap.enrollment import Enroller
from bootstrap.errors import ServiceUnavailable
from bootstrap.issuer_directory import IssuerDirectory
from bootstrap.policy import EnrollmentPolicy
from bootstrap.secretbox import SecretBox
from bootstrap.server import BootstrapServer
from bootstrap.store.audit import AuditWriter
from ca_backends import BackendUnavailable, IssuerConfig, SignRequest, SignResult

from .pki import ca_material, csr_der


class DownBackend:
    """A CA that is always unavailable (what a dead CFSSL looks like to the enroller)."""

    issuer_type: ClassVar[str] = "TEST_DOWN"

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Nothing to validate."""

    @classmethod
    def from_config(cls, config: IssuerConfig) -> DownBackend:
        return cls()

    async def sign(self, request: SignRequest) -> SignResult:
        raise BackendUnavailable("connection refused", retry_after=7)

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        raise BackendUnavailable("connection refused", retry_after=7)

    async def aclose(self) -> None:
        pass


class GatedBackend:
    """Signs with a test CA, but only once ``gate`` is opened (to hold requests in flight)."""

    issuer_type: ClassVar[str] = "TEST_GATED"
    gate: ClassVar[asyncio.Event]
    ca = ca_material()

    @classmethod
    def validate(cls, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
        """Nothing to validate."""

    @classmethod
    def from_config(cls, config: IssuerConfig) -> GatedBackend:
        return cls()

    async def sign(self, request: SignRequest) -> SignResult:
        await self.gate.wait()
        from ca_backends.builtin import BuiltinBackend

        return await BuiltinBackend(self.ca.issuing_key, self.ca.chain).sign(request)

    async def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        return self.ca.chain

    async def aclose(self) -> None:
        pass


ca_backends.register(DownBackend)
ca_backends.register(GatedBackend)


async def _service_with_issuer(pool: asyncpg.Pool, issuer_type: str, unique: str) -> str:
    issuer_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO certificate_issuers (id, name, issuer_type, etag) VALUES ($1, $2, $3, 'e')",
        issuer_id,
        f"{issuer_type.lower()}-{unique}",
        issuer_type,
    )
    reference = f"svc-{issuer_type.lower()}-{unique}"
    await pool.execute(
        """INSERT INTO certificate_issuer_configurations (id, reference, certificate_issuer_id, etag)
           VALUES ($1, $2, $3, 'e')""",
        uuid.uuid4().hex,
        reference,
        issuer_id,
    )
    return reference


async def test_unavailable_ca_gives_503_with_max_age_and_records_nothing(
    coap_client: Any, server_uri: str, server: BootstrapServer, pool: asyncpg.Pool, unique: str
) -> None:
    """A dead CA: the device is told to retry after the CA's hint, and no certificate is recorded."""
    service = await _service_with_issuer(pool, "TEST_DOWN", unique)
    endpoint = f"down-{unique}"
    message = Message(
        code=Code.POST, uri=f"{server_uri}/est/{service}/sen", payload=csr_der(endpoint), content_format=286
    )
    for _ in range(50):  # the server learns about the new service through NOTIFY
        with capture_logs(processors=[log_context.merge]) as logs:
            response = await coap_client.request(message).response
        if response.code != Code.NOT_FOUND:
            break
        await asyncio.sleep(0.05)
        message = Message(
            code=Code.POST,
            uri=f"{server_uri}/est/{service}/sen",
            payload=csr_der(endpoint),
            content_format=286,
        )
    assert response.code == Code.SERVICE_UNAVAILABLE
    assert response.opt.max_age == 7
    assert b"unavailable" in response.payload
    assert await pool.fetchval("SELECT count(*) FROM issued_certificates WHERE endpoint = $1", endpoint) == 0
    # The enroller's log line carries the request's context: what the EST adapter bound for the
    # request and what the enroller added once it knew the issuer; nothing of it outlives the request.
    (line,) = [entry for entry in logs if entry["event"] == "CA unavailable"]
    assert line["endpoint"] == endpoint and line["issuer"] == f"test_down-{unique}"
    assert line["service"] == service and line["est"] == "sen" and len(line["request_id"]) == 16
    assert line["peer"]
    assert log_context.current() == {}


async def test_saturation_answers_503_instead_of_queueing(
    pool: asyncpg.Pool, box: SecretBox, unique: str
) -> None:
    """With the pending limit reached, a further request is refused at once; held ones complete."""
    service = await _service_with_issuer(pool, "TEST_GATED", unique)
    GatedBackend.gate = asyncio.Event()
    directory = IssuerDirectory(pool, box, listener=None)
    await directory.start()
    audit = AuditWriter(pool)
    audit.start()
    enroller = Enroller(
        issuers=directory,
        audit=audit,
        policy=EnrollmentPolicy(),
        max_pending=2,
        retry_after=3,
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    try:
        held = [
            asyncio.create_task(
                enroller.enroll(
                    csr_der=csr_der(f"sat{i}-{unique}"),
                    identity=f"sat{i}-{unique}",
                    service=service,
                    request_id=f"r{i}",
                )
            )
            for i in range(2)
        ]
        await asyncio.sleep(0.1)
        assert enroller.pending == 2
        with pytest.raises(ServiceUnavailable) as info:
            await enroller.enroll(
                csr_der=csr_der(f"sat9-{unique}"), identity=f"sat9-{unique}", service=service, request_id="r9"
            )
        assert info.value.max_age == 3
        GatedBackend.gate.set()
        results = await asyncio.gather(*held)
        assert all(r.issuer_name == f"test_gated-{unique}" for r in results)
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM issued_certificates WHERE endpoint LIKE $1", f"sat%-{unique}"
            )
            == 2
        )
    finally:
        await audit.aclose()
        await directory.aclose()
