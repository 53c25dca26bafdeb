"""Admin API keys: created once, stored only as a SHA-256, revoked but never forgotten.

A key looks like ``lwb_<prefix>_<secret>``: ``prefix`` (8 hex digits) is public, finds the row and
lets operators tell keys apart; ``secret`` is 32 random bytes (base64url). Keys are high-entropy, so
a plain SHA-256 is a safe verifier (no password hashing needed), compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
import structlog

from ..errors import BadRequest, Conflict, NotFound
from ..store import Queryable

log = structlog.get_logger(__name__)

KEY_PREFIX = "lwb"
#: Names: what the audit shows for every change made with the key.
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,100}$"
_KEY = re.compile(r"^lwb_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
#: ``last_used_at`` is written at most this often per key.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at"
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored (without any secret)."""

    id: str
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def _row(record: asyncpg.Record) -> ApiKey:
    return ApiKey(
        **{k: record[k] for k in ("id", "name", "prefix", "created_at", "last_used_at", "revoked_at")}
    )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def check_name(name: str) -> None:
    """400 unless ``name`` is 1-100 of ``A-Z a-z 0-9 _ . @ -``."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise BadRequest("name must be 1-100 of A-Z a-z 0-9 _ . @ -", field="name")


async def create(conn: Queryable, name: str) -> tuple[ApiKey, str]:
    """Create a key named ``name``; returns it with the plaintext key, which is never shown again.

    409 if a live key already has this name.
    """
    check_name(name)
    for _ in range(5):  # the 32-bit prefix may collide with an existing key's
        prefix = secrets.token_hex(4)
        plaintext = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            record = await conn.fetchrow(
                f"""INSERT INTO api_keys (id, name, prefix, key_sha256) VALUES ($1, $2, $3, $4)
                    RETURNING {_COLUMNS}""",  # noqa: S608 (constant column list)
                uuid.uuid4().hex,
                name,
                prefix,
                _digest(plaintext),
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "api_keys_live_name":
                raise Conflict(f"an API key named {name!r} already exists", field="name") from None
            continue
        assert record is not None
        key = _row(record)
        log.info("api key created", api_key_id=key.id, api_key_name=name, prefix=prefix)
        return key, plaintext
    raise RuntimeError("could not find a free API key prefix")  # pragma: no cover


async def list_keys(
    conn: Queryable, *, after: str | None = None, limit: int | None = None, descending: bool = False
) -> list[ApiKey]:
    """Keys (live and revoked) ordered by id, optionally a page after ``after``."""
    op, order = ("<", "DESC") if descending else (">", "ASC")
    records = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR id {op} $1
             ORDER BY id {order} LIMIT $2""",  # noqa: S608 (constant fragments)
        after,
        limit,
    )
    return [_row(r) for r in records]


async def count(conn: Queryable) -> int:
    """Number of keys, live and revoked."""
    return int(await conn.fetchval("SELECT count(*) FROM api_keys"))


async def get(conn: Queryable, key_id: str) -> ApiKey:
    """One key by id; 404 if unknown."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)  # noqa: S608
    if record is None:
        raise NotFound(f"no API key {key_id!r}")
    return _row(record)


async def revoke(conn: Queryable, name_or_id: str) -> ApiKey:
    """Revoke the live key with this id, name or prefix; 404 if there is none."""
    record = await conn.fetchrow(
        f"""UPDATE api_keys SET revoked_at = now()
             WHERE revoked_at IS NULL AND (id = $1 OR name = $1 OR prefix = $1)
             RETURNING {_COLUMNS}""",  # noqa: S608
        name_or_id,
    )
    if record is None:
        raise NotFound(f"no live API key {name_or_id!r}")
    key = _row(record)
    log.info("api key revoked", api_key_id=key.id, api_key_name=key.name)
    return key


async def authenticate(conn: Queryable, presented: str, *, now: dt.datetime | None = None) -> ApiKey | None:
    """The live key ``presented`` is, or ``None``; records the use (at most once a minute)."""
    match = _KEY.match(presented)
    prefix = match.group(1) if match else ""
    record = (
        await conn.fetchrow(
            f"SELECT {_COLUMNS}, key_sha256 FROM api_keys WHERE prefix = $1",  # noqa: S608
            prefix,
        )
        if match
        else None
    )
    stored = bytes(record["key_sha256"]) if record is not None else _DUMMY_HASH
    # Compare even when there is no row, so unknown prefixes take as long as wrong secrets.
    if not hmac.compare_digest(_digest(presented), stored) or record is None:
        return None
    key = _row(record)
    if not key.active:
        return None
    now = now or dt.datetime.now(dt.UTC)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        await conn.execute(
            """UPDATE api_keys SET last_used_at = $2
                WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)""",
            key.id,
            now,
            now - LAST_USED_RESOLUTION,
        )
    return key
