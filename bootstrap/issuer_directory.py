"""Which CA signs for which service: resolved from Postgres once, cached, invalidated by NOTIFY.

The signing path must not read the database per request. :class:`IssuerDirectory` keeps, per
process, the active issuer of each service and one live backend per issuer (so keep-alive HTTP
sessions and cached tokens survive). Any change to issuers, service configurations or the built-in
CA fires ``NOTIFY lwm2m_bootstrap_issuers`` (a trigger, see migration 0001); the process's
:class:`~bootstrap.store.notifications.ChangeListener` hears it and the service map is dropped.
Backends whose issuer did not change are reused.

If the LISTEN connection drops, the cache is bypassed (each lookup reads Postgres) until it is back,
so a missed notification can never leave a process signing with a stale CA.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from cryptography.hazmat.primitives.serialization import Encoding

import ca_backends
from ca_backends import CaBackend, IssuerConfig
from ca_backends.builtin import CHAIN_FIELD, KEY_FIELD, BuiltinBackend

from .builtin_ca import key_pem
from .errors import NotFound
from .secretbox import SecretBox
from .store import builtin_ca as builtin_store
from .store.issuers import credentials_context, service_issuer
from .store.notifications import ChangeListener

log = structlog.get_logger(__name__)

CHANNEL = "lwm2m_bootstrap_issuers"
BUILTIN_NAME = "builtin"


@dataclass(frozen=True)
class ResolvedIssuer:
    """The CA a service signs with right now."""

    service: str
    issuer_id: str | None
    """``None`` for the built-in CA."""
    name: str
    issuer_type: str
    backend: CaBackend


class IssuerDirectory:
    """Per-process cache of service → issuer → backend."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, *, listener: ChangeListener | None = None) -> None:
        self._pool = pool
        self._box = box
        self._listener = listener
        if listener is not None:
            listener.subscribe(CHANNEL, lambda _payload: self.invalidate())
        self._services: dict[str, ResolvedIssuer] = {}
        #: Bumped by every invalidation; lookups that began before one do not fill the cache.
        self._generation = 0
        self._backends: dict[tuple[str | None, str | None], CaBackend] = {}
        self._builtin: tuple[int, BuiltinBackend] | None = None
        self._lock = asyncio.Lock()
        self._retiring: dict[asyncio.Task[None], CaBackend] = {}
        #: Cache hits/misses, for benchmarks and metrics.
        self.hits = 0
        self.misses = 0

    async def start(self) -> None:
        """Load the built-in CA (creating it on first start)."""
        await self._load_builtin()

    async def aclose(self) -> None:
        """Close every backend."""
        for task, backend in self._retiring.items():
            if not task.done():
                task.cancel()
                await backend.aclose()
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()
        self._services.clear()

    def invalidate(self) -> None:
        """Forget every service mapping (called on NOTIFY)."""
        self._generation += 1
        self._services.clear()
        self._builtin = None

    async def resolve(self, service: str) -> ResolvedIssuer:
        """The issuer active for ``service``; raises :class:`NotFound` for an unknown service."""
        cached = self._services.get(service)
        if cached is not None and self._listener is not None and self._listener.connected:
            self.hits += 1
            return cached
        self.misses += 1
        async with self._lock:
            # A change notified while we read must not be overwritten by what we read before it.
            generation = self._generation
            row = await service_issuer(self._pool, service)
            if row is None:
                raise NotFound(f"no certificate issuer configuration for service {service!r}")
            if row.issuer_id is None:
                backend: CaBackend = await self._load_builtin()
                resolved = ResolvedIssuer(service, None, BUILTIN_NAME, BuiltinBackend.issuer_type, backend)
            else:
                assert row.issuer_type is not None and row.issuer_name is not None
                key = (row.issuer_id, row.etag)
                backend_or_none = self._backends.get(key)
                if backend_or_none is None:
                    backend_or_none = self._make_backend(
                        row.issuer_id,
                        row.issuer_name,
                        row.issuer_type,
                        row.attributes,
                        row.sealed_credentials,
                    )
                    await self._retire_other_versions(row.issuer_id, key)
                    self._backends[key] = backend_or_none
                resolved = ResolvedIssuer(
                    service, row.issuer_id, row.issuer_name, row.issuer_type, backend_or_none
                )
            if generation == self._generation:
                self._services[service] = resolved
            return resolved

    async def _load_builtin(self) -> BuiltinBackend:
        if self._builtin is not None:
            return self._builtin[1]
        generation = self._generation
        active = await builtin_store.ensure(self._pool, self._box)
        config = IssuerConfig(
            issuer_id=None,
            name=BUILTIN_NAME,
            attributes={CHAIN_FIELD: "".join(c.public_bytes(Encoding.PEM).decode() for c in active.chain)},
            credentials={KEY_FIELD: key_pem(active.issuing_key).decode()},
        )
        backend = BuiltinBackend.from_config(config)
        if generation == self._generation:
            self._builtin = (active.generation, backend)
        return backend

    def _make_backend(
        self,
        issuer_id: str,
        name: str,
        issuer_type: str,
        attributes: dict[str, Any],
        sealed: bytes | None,
    ) -> CaBackend:
        credentials = self._box.open_json(sealed, context=credentials_context(issuer_id)) if sealed else {}
        config = IssuerConfig(
            issuer_id=issuer_id,
            name=name,
            attributes={k: str(v) for k, v in attributes.items() if v is not None},
            credentials={k: str(v) for k, v in credentials.items() if v is not None},
        )
        return ca_backends.create(issuer_type, config)

    async def _retire_other_versions(self, issuer_id: str, keep: tuple[str | None, str | None]) -> None:
        for key in [k for k in self._backends if k[0] == issuer_id and k != keep]:
            old = self._backends.pop(key)
            # Requests already holding the old backend finish first; close it a little later.
            self._retiring[asyncio.create_task(self._close_later(old, delay=60.0))] = old

    async def _close_later(self, backend: CaBackend, *, delay: float) -> None:
        await asyncio.sleep(delay)
        await backend.aclose()
