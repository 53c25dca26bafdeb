"""The per-process issuer cache against real Postgres, including NOTIFY invalidation."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.builtin_ca import key_pem
from bootstrap.errors import NotFound
from bootstrap.issuer_directory import IssuerDirectory
from bootstrap.secretbox import SecretBox
from bootstrap.store.issuers import credentials_context
from bootstrap.store.notifications import ChangeListener

from .pki import ca_material


async def _wait_for(predicate: object, limit_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def _insert_own_ca_issuer(pool: asyncpg.Pool, box: SecretBox, name: str) -> str:
    """Store a second CA as an issuer row (type BUILTIN: a CA whose key we hold)."""
    ca = ca_material()
    issuer_id = uuid.uuid4().hex
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in ca.chain)
    sealed = box.seal_json(
        {"private_key": key_pem(ca.issuing_key).decode()}, context=credentials_context(issuer_id)
    )
    await pool.execute(
        """INSERT INTO certificate_issuers (id, name, issuer_type, issuer_attributes, credentials, etag)
           VALUES ($1, $2, 'BUILTIN', jsonb_build_object('certificate_chain', $3::text), $4, 'e1')""",
        issuer_id,
        name,
        chain,
        sealed,
    )
    return issuer_id


async def test_resolve_builtin_unknown_and_invalidation(
    database_url: str, pool: asyncpg.Pool, box: SecretBox, unique: str
) -> None:
    """LWM2M starts on the built-in CA; a new service and a re-pointed service are seen after NOTIFY."""
    listener = ChangeListener(database_url)
    directory = IssuerDirectory(pool, box, listener=listener)
    await directory.start()
    await listener.start()
    try:
        lwm2m = await directory.resolve("LWM2M")
        assert lwm2m.issuer_id is None and lwm2m.issuer_type == "BUILTIN"
        assert (await directory.resolve("LWM2M")) is lwm2m  # cached
        assert directory.hits >= 1

        service = f"renewal-{unique}"
        with pytest.raises(NotFound):
            await directory.resolve(service)

        issuer_id = await _insert_own_ca_issuer(pool, box, f"own-{unique}")
        await pool.execute(
            """INSERT INTO certificate_issuer_configurations (id, reference, certificate_issuer_id, etag)
               VALUES ($1, $2, $3, 'e')""",
            uuid.uuid4().hex,
            service,
            issuer_id,
        )
        await _wait_for(lambda: not directory._services)  # the NOTIFY emptied the cache
        resolved = await directory.resolve(service)
        assert resolved.issuer_id == issuer_id and resolved.name == f"own-{unique}"
        # The backend is reused while the issuer row is unchanged.
        directory.invalidate()
        assert (await directory.resolve(service)).backend is resolved.backend
    finally:
        await pool.execute(
            "DELETE FROM certificate_issuer_configurations WHERE reference = $1", f"renewal-{unique}"
        )
        await listener.aclose()
        await directory.aclose()


async def test_without_listener_every_lookup_reads_postgres(pool: asyncpg.Pool, box: SecretBox) -> None:
    """With no LISTEN connection the cache is bypassed, so changes are never missed."""
    directory = IssuerDirectory(pool, box, listener=None)
    await directory.start()
    try:
        await directory.resolve("LWM2M")
        await directory.resolve("LWM2M")
        assert directory.hits == 0 and directory.misses == 2
    finally:
        await directory.aclose()
