"""What DTLS/TLS handshakes check devices against, held in memory and kept current by NOTIFY.

Handshake callbacks run synchronously inside OpenSSL, so they cannot query Postgres. The trust
anchors (a handful of CA certificates) are loaded at start and reloaded when a notification says
they changed. PSK credentials may number in the millions, so they are fetched on demand: the DTLS
transport reads the identity from the plaintext ClientKeyExchange, awaits :meth:`prefetch_psk`, and
only then lets OpenSSL run the callback, which finds the key in a bounded LRU cache. A notification
naming an identity drops it from the cache (and its next handshake fetches it again).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any

import asyncpg
import structlog
from cryptography import x509

from .secretbox import SecretBox
from .store import builtin_ca as builtin_store
from .store import devices, trust
from .store.notifications import ChangeListener

log = structlog.get_logger(__name__)

TRUST_CHANNEL = "lwm2m_bootstrap_trust"
PSK_CHANNEL = "lwm2m_bootstrap_psk"
#: Fired (among others) when the built-in CA changes.
ISSUERS_CHANNEL = "lwm2m_bootstrap_issuers"


class DeviceTrust:
    """Trust anchors and PSKs for device handshakes (the transports' ``TrustSource``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        *,
        listener: ChangeListener | None,
        psk_cache_size: int = 100_000,
    ) -> None:
        self._pool = pool
        self._box = box
        self._cas: tuple[x509.Certificate, ...] = ()
        self._psk: OrderedDict[str, devices.PskCredential | None] = OrderedDict()
        self._psk_capacity = psk_cache_size
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self._psk_generation = 0
        #: Increases on every reload of the trust anchors (transports rebuild their stores on change).
        self.version = 0
        if listener is not None:
            listener.subscribe(TRUST_CHANNEL, lambda _payload: self._spawn(self.reload_trust()))
            listener.subscribe(ISSUERS_CHANNEL, lambda _payload: self._spawn(self.reload_trust()))
            listener.subscribe(PSK_CHANNEL, self._on_psk_change)

    async def start(self) -> None:
        """Load the trust anchors (PSKs are fetched when devices handshake)."""
        await self.reload_trust()

    async def aclose(self) -> None:
        """Cancel pending reloads."""
        for task in list(self._tasks):
            task.cancel()

    def trusted_cas(self) -> Sequence[x509.Certificate]:
        """The CAs device certificates must chain to (see :meth:`reload_trust`)."""
        return self._cas

    def psk_known(self, identity: bytes) -> bool:
        """Whether the cache can answer for this identity (a key, or known to have none)."""
        return identity.decode("utf-8", "replace") in self._psk

    async def prefetch_psk(self, identity: bytes) -> None:
        """Fetch one identity's credential (or its absence) into the cache."""
        name = identity.decode("utf-8", "replace")
        for _ in range(3):  # a change notified while we read: read again rather than cache it stale
            generation = self._psk_generation
            credential = await devices.by_identity(self._pool, self._box, name)
            if generation == self._psk_generation:
                break
        self._psk[name] = credential
        self._psk.move_to_end(name)
        while len(self._psk) > self._psk_capacity:
            self._psk.popitem(last=False)

    def psk_for_identity(self, identity: bytes) -> bytes | None:
        """The PSK for a handshake identity, or ``None`` (the handshake then fails)."""
        credential = self._psk.get(identity.decode("utf-8", "replace"))
        return credential.key if credential else None

    def endpoint_for_psk_identity(self, identity: str) -> str | None:
        """The endpoint a PSK identity belongs to (known once its device has handshaken)."""
        credential = self._psk.get(identity)
        return credential.endpoint if credential else None

    async def reload_trust(self) -> None:
        """Re-read the trust anchors: factory CAs (service ``bootstrap``), CAs trusted for LwM2M
        (service ``lwm2m``) and the built-in CA, whose certificates devices present for ``sren``."""
        # One reload at a time, in the order they were asked for (asyncio.Lock is FIFO): a reload
        # that read before a change can then never land after one that read after it.
        async with self._reload_lock:
            anchors = await trust.active_certificates(self._pool, "bootstrap")
            anchors += await trust.active_certificates(self._pool, "lwm2m")
            anchors += await builtin_store.active_chain(self._pool)
            anchors += await builtin_store.retired_issuing(self._pool)
            self._cas = tuple(dict.fromkeys(anchors))
            self.version += 1
        log.info("trust anchors loaded", count=len(self._cas))

    def _on_psk_change(self, payload: str | None) -> None:
        """An identity changed (payload) or anything may have (reconnect): forget it / everything."""
        self._psk_generation += 1
        if payload is None:
            self._psk.clear()
        else:
            self._psk.pop(payload, None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
