"""What DTLS/TLS handshakes check devices against, held in memory and kept current by NOTIFY.

Handshake callbacks run synchronously inside OpenSSL, so they cannot query Postgres: the trusted
factory CAs (service ``bootstrap``) and the PSK credentials are loaded at start, and reloaded when a
notification says they changed (trust: whole set; PSK: the one identity named in the payload).
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, *, listener: ChangeListener | None) -> None:
        self._pool = pool
        self._box = box
        self._cas: tuple[x509.Certificate, ...] = ()
        self._psk: dict[str, devices.PskCredential] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Increases on every reload of the trust anchors (transports rebuild their stores on change).
        self.version = 0
        if listener is not None:
            listener.subscribe(TRUST_CHANNEL, lambda _payload: self._spawn(self.reload_trust()))
            listener.subscribe(ISSUERS_CHANNEL, lambda _payload: self._spawn(self.reload_trust()))
            listener.subscribe(PSK_CHANNEL, self._on_psk_change)

    async def start(self) -> None:
        """Load everything."""
        await self.reload_trust()
        await self.reload_psk()

    async def aclose(self) -> None:
        """Cancel pending reloads."""
        for task in list(self._tasks):
            task.cancel()

    def trusted_cas(self) -> Sequence[x509.Certificate]:
        """The CAs device certificates must chain to (see :meth:`reload_trust`)."""
        return self._cas

    def psk_for_identity(self, identity: bytes) -> bytes | None:
        """The PSK for a handshake identity, or ``None`` (the handshake then fails)."""
        credential = self._psk.get(identity.decode("utf-8", "replace"))
        return credential.key if credential else None

    def endpoint_for_psk_identity(self, identity: str) -> str | None:
        """The endpoint a PSK identity belongs to."""
        credential = self._psk.get(identity)
        return credential.endpoint if credential else None

    async def reload_trust(self) -> None:
        """Re-read the trust anchors: factory CAs (service ``bootstrap``), CAs trusted for LwM2M
        (service ``lwm2m``) and the built-in CA, whose certificates devices present for ``sren``."""
        anchors = await trust.active_certificates(self._pool, "bootstrap")
        anchors += await trust.active_certificates(self._pool, "lwm2m")
        anchors += await builtin_store.active_chain(self._pool)
        self._cas = tuple(dict.fromkeys(anchors))
        self.version += 1
        log.info("trust anchors loaded", count=len(self._cas))

    async def reload_psk(self, identity: str | None = None) -> None:
        """Re-read one PSK identity, or all of them."""
        if identity is None:
            self._psk = await devices.load_all(self._pool, self._box)
            log.info("PSK credentials loaded", count=len(self._psk))
            return
        credential = await devices.by_identity(self._pool, self._box, identity)
        if credential is None:
            self._psk.pop(identity, None)
        else:
            self._psk[identity] = credential

    def _on_psk_change(self, payload: str | None) -> None:
        self._spawn(self.reload_psk(payload))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
