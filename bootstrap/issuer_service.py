"""Managing certificate issuers and service configurations: one service layer for the CLI and the
admin API.

An *issuer* is a CA the server can ask to sign (CFSSL, GlobalSign); its credentials are sealed at
rest and never returned. A *service configuration* says which issuer signs for a service: ``LWM2M``
(device LwM2M certificates, always present) or a custom reference (device custom certificate
renewal). ``certificate_issuer_id`` NULL means the built-in CA. Exactly one CA is active per service
by construction (one row per reference), and an issuer in use cannot be deleted.

Every change commits in one statement or transaction, so a refused request leaves nothing behind;
the triggers of migration 0001 notify running servers, which drop their issuer caches.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

import ca_backends
from ca_backends import BackendError, InvalidIssuerConfig, IssuerConfig

from . import policy as policy_core
from .errors import BadRequest, Conflict, FailedDependency, NotFound, PreconditionFailed
from .secretbox import SecretBox
from .store import audit
from .store import issuers as store

log = structlog.get_logger(__name__)

#: The service every device certificate for the LwM2M connection is signed for.
LWM2M = "LWM2M"
#: References that cannot be created as custom services (compared case-insensitively).
RESERVED_REFERENCES = frozenset({"LWM2M", "BOOTSTRAP"})
#: Issuer types that live in ``certificate_issuers``; the built-in CA is implicit (NULL issuer).
BUILTIN_TYPE = "BUILTIN"
_REFERENCE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
#: Service reference recorded in the audit for test certificates signed by ``verify``.
VERIFY_SERVICE = "__verify__"


@dataclass(frozen=True)
class Issuer:
    """An issuer as operators see it: never with credentials."""

    id: str
    name: str
    description: str | None
    issuer_type: str
    issuer_attributes: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: str
    verified_at: dt.datetime | None = None
    verify_successful: bool | None = None
    verify_message: str | None = None
    services: tuple[str, ...] = field(default=())
    """References of the services this issuer is active for."""


@dataclass(frozen=True)
class ServiceConfiguration:
    """Which CA signs for one service."""

    id: str
    reference: str
    certificate_issuer_id: str | None
    """``None``: the built-in CA."""
    created_at: dt.datetime
    updated_at: dt.datetime
    etag: str

    @property
    def is_custom(self) -> bool:
        """Anything but ``LWM2M`` is a custom service (certificate renewal)."""
        return self.reference != LWM2M


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of signing a test certificate through an issuer."""

    successful: bool
    message: str


def _attributes(value: Any) -> dict[str, str]:
    data = json.loads(value) if isinstance(value, str) else dict(value or {})
    return {str(k): str(v) for k, v in data.items() if v is not None}


def _issuer(record: asyncpg.Record, services: list[str] | None = None) -> Issuer:
    return Issuer(
        id=record["id"],
        name=record["name"],
        description=record["description"],
        issuer_type=record["issuer_type"],
        issuer_attributes=_attributes(record["issuer_attributes"]),
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        etag=record["etag"],
        verified_at=record["verified_at"],
        verify_successful=record["verify_successful"],
        verify_message=record["verify_message"],
        services=tuple(services or ()),
    )


def _config(record: asyncpg.Record) -> ServiceConfiguration:
    return ServiceConfiguration(**dict(record))


def _new_etag() -> str:
    return uuid.uuid4().hex


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 50:
        raise BadRequest("name must be 1-50 characters", field="name")
    if name.lower() == "builtin":
        raise BadRequest("'builtin' names the built-in CA", field="name")


def _check_description(description: str | None) -> None:
    if description is not None and (not isinstance(description, str) or len(description) > 100):
        raise BadRequest("description must be at most 100 characters", field="description")


def _check_type(issuer_type: str) -> None:
    if issuer_type == BUILTIN_TYPE:
        raise BadRequest("the built-in CA is implicit: use it by setting no issuer", field="issuer_type")
    try:
        ca_backends.factory_for(issuer_type)
    except InvalidIssuerConfig as exc:
        raise BadRequest(exc.reason, field="issuer_type") from None


def _validate_backend(
    issuer_type: str, attributes: Mapping[str, str], credentials: Mapping[str, str]
) -> None:
    try:
        ca_backends.validate(issuer_type, attributes, credentials)
    except InvalidIssuerConfig as exc:
        raise BadRequest(exc.reason, field=exc.field) from None


def _string_map(value: Mapping[str, Any] | None, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest("must be an object of strings", field=field_name)
    result: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue
        if not isinstance(item, str):
            raise BadRequest("must be a string", field=f"{field_name}.{key}")
        result[str(key)] = item
    return result


class IssuerService:
    """Issuers and service configurations, over a pool and the master key."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    # --- issuers ---------------------------------------------------------------------------

    async def list_issuers(self) -> list[Issuer]:
        """All issuers, oldest first, each with the services it is active for."""
        records = await store.issuer_rows(self._pool)
        in_use: dict[str, list[str]] = {}
        for config in await store.config_rows(self._pool):
            if config["certificate_issuer_id"]:
                in_use.setdefault(config["certificate_issuer_id"], []).append(config["reference"])
        return [_issuer(r, in_use.get(r["id"])) for r in records]

    async def get_issuer(self, id_or_name: str) -> Issuer:
        """One issuer by id or name; 404 if unknown."""
        record = await store.issuer_row(self._pool, id_or_name)
        if record is None:
            raise NotFound(f"no certificate issuer {id_or_name!r}")
        return _issuer(record, await store.services_using(self._pool, record["id"]))

    async def create_issuer(
        self,
        *,
        name: str,
        issuer_type: str,
        attributes: Mapping[str, Any] | None,
        credentials: Mapping[str, Any] | None,
        description: str | None = None,
    ) -> Issuer:
        """Register an issuer without activating it; the backend validates its configuration first."""
        _check_name(name)
        _check_description(description)
        _check_type(issuer_type)
        attrs = _string_map(attributes, "issuer_attributes")
        creds = _string_map(credentials, "issuer_credentials")
        _validate_backend(issuer_type, attrs, creds)
        issuer_id = uuid.uuid4().hex
        try:
            record = await self._pool.fetchrow(
                f"""INSERT INTO certificate_issuers
                        (id, name, description, issuer_type, issuer_attributes, credentials, etag)
                    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
                    RETURNING {store.ISSUER_COLUMNS}""",  # noqa: S608 (constant column list)
                issuer_id,
                name,
                description,
                issuer_type,
                json.dumps(attrs),
                self._box.seal_json(creds, context=store.credentials_context(issuer_id)),
                _new_etag(),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a certificate issuer named {name!r} already exists", field="name") from None
        assert record is not None
        log.info("issuer created", issuer=name, issuer_type=issuer_type)
        return _issuer(record)

    async def update_issuer(
        self,
        id_or_name: str,
        *,
        name: str | None = None,
        description: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        credentials: Mapping[str, Any] | None = None,
        if_match: str | None = None,
    ) -> Issuer:
        """Change what is given; attributes and credentials are replaced as a whole when given and
        validated together with what they are combined with."""
        async with self._pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                f"SELECT {store.ISSUER_COLUMNS} FROM certificate_issuers"  # noqa: S608
                " WHERE id = $1 OR name = $1 FOR UPDATE",
                id_or_name,
            )
            if record is None:
                raise NotFound(f"no certificate issuer {id_or_name!r}")
            if if_match is not None and if_match.strip('"') != record["etag"]:
                raise PreconditionFailed("the issuer was changed by someone else (ETag mismatch)")
            issuer_id = record["id"]
            new_name = record["name"] if name is None else name
            _check_name(new_name)
            new_description = record["description"] if description is None else description
            _check_description(new_description)
            attrs = (
                _attributes(record["issuer_attributes"])
                if attributes is None
                else _string_map(attributes, "issuer_attributes")
            )
            context = store.credentials_context(issuer_id)
            creds = (
                {k: str(v) for k, v in self._box.open_json(record["credentials"], context=context).items()}
                if credentials is None and record["credentials"]
                else _string_map(credentials, "issuer_credentials")
            )
            _validate_backend(record["issuer_type"], attrs, creds)
            try:
                updated = await conn.fetchrow(
                    f"""UPDATE certificate_issuers
                           SET name = $2, description = $3, issuer_attributes = $4::jsonb, credentials = $5,
                               updated_at = now(), etag = $6,
                               verified_at = NULL, verify_successful = NULL, verify_message = NULL
                         WHERE id = $1 RETURNING {store.ISSUER_COLUMNS}""",  # noqa: S608
                    issuer_id,
                    new_name,
                    new_description,
                    json.dumps(attrs),
                    self._box.seal_json(creds, context=context),
                    _new_etag(),
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"a certificate issuer named {new_name!r} already exists", field="name"
                ) from None
            assert updated is not None
            services = await store.services_using(conn, issuer_id)
        log.info("issuer updated", issuer=new_name)
        return _issuer(updated, services)

    async def delete_issuer(self, id_or_name: str, *, if_match: str | None = None) -> None:
        """Delete an issuer; refused (400) while any service uses it."""
        async with self._pool.acquire() as conn, conn.transaction():
            record = await conn.fetchrow(
                "SELECT id, name, etag FROM certificate_issuers WHERE id = $1 OR name = $1 FOR UPDATE",
                id_or_name,
            )
            if record is None:
                raise NotFound(f"no certificate issuer {id_or_name!r}")
            if if_match is not None and if_match.strip('"') != record["etag"]:
                raise PreconditionFailed("the issuer was changed by someone else (ETag mismatch)")
            services = await store.services_using(conn, record["id"])
            if services:
                raise BadRequest(
                    f"certificate issuer {record['name']!r} is active for {', '.join(services)}; "
                    "point those services at another CA first"
                )
            await conn.execute("DELETE FROM certificate_issuers WHERE id = $1", record["id"])
        log.info("issuer deleted", issuer=record["name"])

    def backend_config(self, record: asyncpg.Record) -> IssuerConfig:
        """What a CA backend needs for a stored issuer row (``certificate_issuers``): its attributes
        and its credentials, opened with the master key."""
        issuer_id = record["id"]
        credentials = (
            self._box.open_json(record["credentials"], context=store.credentials_context(issuer_id))
            if record["credentials"]
            else {}
        )
        return IssuerConfig(
            issuer_id=issuer_id,
            name=record["name"],
            attributes=_attributes(record["issuer_attributes"]),
            credentials={str(k): str(v) for k, v in credentials.items()},
        )

    async def verify_issuer(self, id_or_name: str) -> VerifyResult:
        """Ask the CA to sign a test certificate (this may use CA quota), and record the outcome.

        The test certificate is audited like any other certificate the CA issued.
        """
        record = await store.issuer_row(self._pool, id_or_name)
        if record is None:
            raise NotFound(f"no certificate issuer {id_or_name!r}")
        issuer_id, name = record["id"], record["name"]
        config = self.backend_config(record)
        request_id = uuid.uuid4().hex[:16]
        common_name = f"verify-{uuid.uuid4().hex[:12]}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(key, hashes.SHA256())
        )
        request = policy_core.approve(
            csr.public_bytes(Encoding.DER),
            identity=common_name,
            allow_unauthenticated=False,
            service=VERIFY_SERVICE,
            policy=policy_core.EnrollmentPolicy(validity=dt.timedelta(days=1)),
            now=dt.datetime.now(dt.UTC),
            serial_number=policy_core.new_serial_number(os.urandom),
            request_id=request_id,
        )
        backend = ca_backends.create(record["issuer_type"], config)
        try:
            result = await backend.sign(request)
            if result.certificate.public_key() != key.public_key():
                raise FailedDependency("the CA returned a certificate for another key")
            await audit.record_one(
                self._pool,
                audit.IssuedCertificate.of(
                    result.certificate,
                    endpoint=common_name,
                    service_reference=VERIFY_SERVICE,
                    issuer_id=issuer_id,
                    issuer_name=name,
                    issuer_type=record["issuer_type"],
                    request_id=request_id,
                ),
            )
            outcome = VerifyResult(
                True, f"signed a test certificate (serial {format(result.certificate.serial_number, 'X')})"
            )
        except BackendError as exc:
            outcome = VerifyResult(False, f"{exc.kind}: {exc.message}")
        except FailedDependency as exc:
            outcome = VerifyResult(False, exc.message)
        finally:
            await backend.aclose()
        await self._pool.execute(
            """UPDATE certificate_issuers SET verified_at = now(), verify_successful = $2, verify_message = $3
                WHERE id = $1""",
            issuer_id,
            outcome.successful,
            outcome.message,
        )
        log.info("issuer verified", issuer=name, successful=outcome.successful, message=outcome.message)
        return outcome

    # --- service configurations ------------------------------------------------------------

    async def list_services(self, *, reference: str | None = None) -> list[ServiceConfiguration]:
        """Service configurations, ``LWM2M`` first (optionally only ``reference``)."""
        return [_config(r) for r in await store.config_rows(self._pool, reference=reference)]

    async def get_service(self, id_or_reference: str) -> ServiceConfiguration:
        """One configuration by id or reference; 404 if unknown."""
        record = await self._pool.fetchrow(
            f"SELECT {store.CONFIG_COLUMNS} FROM certificate_issuer_configurations"  # noqa: S608
            " WHERE id = $1 OR reference = $1",
            id_or_reference,
        )
        if record is None:
            raise NotFound(f"no certificate issuer configuration {id_or_reference!r}")
        return _config(record)

    async def create_service(self, reference: str, issuer: str | None) -> ServiceConfiguration:
        """Create a custom service configuration (409 if the reference exists)."""
        self._check_custom_reference(reference)
        issuer_id = await self._issuer_id(issuer)
        try:
            record = await self._pool.fetchrow(
                f"""INSERT INTO certificate_issuer_configurations (id, reference, certificate_issuer_id, etag)
                    VALUES ($1, $2, $3, $4) RETURNING {store.CONFIG_COLUMNS}""",  # noqa: S608
                uuid.uuid4().hex,
                reference,
                issuer_id,
                _new_etag(),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"service configuration {reference!r} already exists", field="reference") from None
        assert record is not None
        log.info("service configuration created", service=reference, issuer_id=issuer_id)
        return _config(record)

    async def set_service_issuer(
        self,
        id_or_reference: str,
        issuer: str | None,
        *,
        require_verified: bool = False,
        create: bool = False,
        if_match: str | None = None,
    ) -> ServiceConfiguration:
        """Make ``issuer`` (id or name; ``None`` = built-in CA) the CA of a service.

        With ``create``, a missing custom service is created on the way. With ``require_verified``
        the issuer is verified first and activation is refused if that fails.
        """
        issuer_id = await self._issuer_id(issuer)
        if require_verified and issuer_id is not None:
            outcome = await self.verify_issuer(issuer_id)
            if not outcome.successful:
                raise FailedDependency(f"verification failed, issuer not activated: {outcome.message}")
        record = await self._pool.fetchrow(
            f"""UPDATE certificate_issuer_configurations
                   SET certificate_issuer_id = $2, updated_at = now(), etag = $3
                 WHERE (id = $1 OR reference = $1) AND ($4::text IS NULL OR etag = $4)
                 RETURNING {store.CONFIG_COLUMNS}""",  # noqa: S608
            id_or_reference,
            issuer_id,
            _new_etag(),
            if_match.strip('"') if if_match else None,
        )
        if record is not None:
            log.info("service issuer set", service=record["reference"], issuer_id=issuer_id)
            return _config(record)
        exists = await self._pool.fetchval(
            "SELECT 1 FROM certificate_issuer_configurations WHERE id = $1 OR reference = $1", id_or_reference
        )
        if exists:
            raise PreconditionFailed("the service configuration was changed by someone else (ETag mismatch)")
        if not create:
            raise NotFound(f"no certificate issuer configuration {id_or_reference!r}")
        return await self.create_service(id_or_reference, issuer_id)

    async def delete_service(self, id_or_reference: str, *, if_match: str | None = None) -> None:
        """Delete a custom service configuration (``LWM2M`` cannot be deleted)."""
        config = await self.get_service(id_or_reference)
        if not config.is_custom:
            raise BadRequest("the LWM2M service configuration cannot be deleted", field="reference")
        if if_match is not None and if_match.strip('"') != config.etag:
            raise PreconditionFailed("the service configuration was changed by someone else (ETag mismatch)")
        await self._pool.execute("DELETE FROM certificate_issuer_configurations WHERE id = $1", config.id)
        log.info("service configuration deleted", service=config.reference)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_custom_reference(reference: str) -> None:
        if not isinstance(reference, str) or not _REFERENCE.match(reference):
            raise BadRequest("reference must be 1-100 of A-Z a-z 0-9 _ . -", field="reference")
        if reference.upper() in RESERVED_REFERENCES:
            raise BadRequest(f"reference {reference!r} is reserved", field="reference")

    async def _issuer_id(self, issuer: str | None) -> str | None:
        if issuer is None or issuer.lower() == "builtin":
            return None
        record = await store.issuer_row(self._pool, issuer)
        if record is None:
            raise NotFound(f"no certificate issuer {issuer!r}", field="certificate_issuer_id")
        return str(record["id"])
