"""The server's own certificate, issued by the built-in CA, against the session's Postgres."""

from __future__ import annotations

import asyncio
import base64
import uuid

import asyncpg
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.secretbox import SecretBox
from bootstrap.server_identity import ensure_issued, stored_certificate


async def test_servers_starting_together_present_one_certificate(
    pool: asyncpg.Pool, master_key_b64: str
) -> None:
    """``serve --workers N`` starts N processes that each ask for the certificate at once: they
    must all get the same one, the one stored, or devices that pin it fail on some workers."""
    box = SecretBox(base64.b64decode(master_key_b64))
    names = (f"race-{uuid.uuid4().hex[:8]}.example",)
    assert await stored_certificate(pool, names) is None
    issued = await asyncio.gather(*(ensure_issued(pool, box, names) for _ in range(4)))
    encodings = {credentials.chain[0].public_bytes(Encoding.DER) for credentials in issued}
    assert len(encodings) == 1
    assert await stored_certificate(pool, names) == encodings.pop()
    assert all(c.private_key.public_key() == issued[0].chain[0].public_key() for c in issued)
