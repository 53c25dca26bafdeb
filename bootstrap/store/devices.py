"""Per-device PSK credentials (PSK-mode bootstrap). Keys are sealed with the master key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from ..errors import BadRequest, Conflict, NotFound
from ..secretbox import SecretBox
from . import Queryable

#: RFC 4279 §5.3 allows identities up to 2^16-1 bytes; LwM2M /0/x/3 holds up to 128.
MAX_IDENTITY_BYTES = 128
#: LwM2M Transport TS: PSK keys of 16 bytes or more are recommended, at most 64.
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 64


@dataclass(frozen=True)
class PskCredential:
    """A device's PSK identity and key."""

    endpoint: str
    identity: str
    key: bytes


def _context(endpoint: str) -> str:
    return f"device_credentials:{endpoint}:psk_key"


def sealed_key(box: SecretBox, endpoint: str, key: bytes) -> bytes:
    """``key`` sealed for ``endpoint``'s row, as stored (for bulk loads)."""
    return box.seal(key, context=_context(endpoint))


def validate(endpoint: str, identity: str, key: bytes) -> None:
    """Check sizes; raise 400 naming the field."""
    if not 1 <= len(endpoint) <= 128:
        raise BadRequest("endpoint must be 1-128 characters", field="endpoint")
    if not 1 <= len(identity.encode()) <= MAX_IDENTITY_BYTES:
        raise BadRequest(f"PSK identity must be 1-{MAX_IDENTITY_BYTES} bytes", field="psk_identity")
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise BadRequest(f"PSK key must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes", field="psk_key")


async def put(conn: Queryable, box: SecretBox, credential: PskCredential) -> None:
    """Create or replace the PSK of an endpoint; 409 if the identity belongs to another endpoint."""
    validate(credential.endpoint, credential.identity, credential.key)
    try:
        await conn.execute(
            """INSERT INTO device_credentials (endpoint, psk_identity, psk_key) VALUES ($1, $2, $3)
               ON CONFLICT (endpoint) DO UPDATE
                   SET psk_identity = excluded.psk_identity, psk_key = excluded.psk_key,
                       updated_at = now()""",
            credential.endpoint,
            credential.identity,
            box.seal(credential.key, context=_context(credential.endpoint)),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(
            "this PSK identity is already used by another endpoint", field="psk_identity"
        ) from None


async def remove(conn: Queryable, endpoint: str) -> None:
    """Delete an endpoint's PSK; 404 if it has none."""
    if (
        await conn.fetchval("DELETE FROM device_credentials WHERE endpoint = $1 RETURNING endpoint", endpoint)
        is None
    ):
        raise NotFound(f"no PSK credentials for endpoint {endpoint!r}")


async def list_identities(conn: Queryable, *, limit: int = 100) -> list[tuple[str, str, dt.datetime]]:
    """(endpoint, identity, updated_at) without keys, newest first."""
    records = await conn.fetch(
        "SELECT endpoint, psk_identity, updated_at FROM device_credentials ORDER BY updated_at DESC LIMIT $1",
        limit,
    )
    return [(r["endpoint"], r["psk_identity"], r["updated_at"]) for r in records]


async def by_identity(conn: Queryable, box: SecretBox, identity: str) -> PskCredential | None:
    """The credential for a PSK identity, key decrypted."""
    record = await conn.fetchrow(
        "SELECT endpoint, psk_key FROM device_credentials WHERE psk_identity = $1", identity
    )
    if record is None:
        return None
    return PskCredential(
        record["endpoint"], identity, box.open(record["psk_key"], context=_context(record["endpoint"]))
    )
