"""Bootstrapping one device: who it is, which configuration it gets, the per-device credentials.

The LwM2M protocol itself is the sans-I/O :class:`~bootstrap.lwm2m.session.BootstrapSession`; this
module does the I/O around it that the CoAP adapter should not: the configuration lookup, server-side
key generation (through the enroller, so policy, CA and audit are the same as for EST), PSK
generation and storage, the registry of live sessions (a new Bootstrap-Request for an endpoint
cancels the old one), and the record of each bootstrap's outcome.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from . import metrics
from .bootstrap_config_cache import BootstrapConfigCache
from .bootstrap_plan import BootstrapConfig, DeviceCredentials, OscoreContext
from .enrollment import Enroller
from .errors import BadRequest, Unauthorized
from .lwm2m.session import BootstrapSession
from .policy import Requester
from .secretbox import SecretBox
from .store import bootstrap_configs as store
from .store.group_commit import GroupCommitWriter
from .store.notifications import ChangeListener

log = structlog.get_logger(__name__)

#: The service LwM2M certificates made by server-side key generation are signed for.
LWM2M_SERVICE = "LWM2M"
#: Bytes of generated PSKs for the LwM2M server account.
PSK_KEY_BYTES = 32
#: OSCORE: a 32-byte master secret and an 8-byte salt per device; 7-byte IDs, the most
#: AES-CCM-16-64-128 allows (RFC 8613 §3.3), so random Sender IDs rarely collide.
OSCORE_SECRET_BYTES, OSCORE_SALT_BYTES, OSCORE_ID_BYTES = 32, 8, 7
_OSCORE_ATTEMPTS = 5


@dataclass(frozen=True)
class BootstrapQuery:
    """The query of a Bootstrap-Request or Bootstrap-Pack-Request."""

    endpoint: str
    preferred_format: int | None


def parse_query(queries: Sequence[str]) -> BootstrapQuery:
    """``ep=NAME[&pct=FMT]`` (LwM2M 1.2 Transport TS, Bootstrap-Request). 4.00 if ``ep`` is missing."""
    values: dict[str, str] = {}
    for item in queries:
        key, _, value = item.partition("=")
        values.setdefault(key, value)
    endpoint = values.get("ep", "")
    if not endpoint:
        raise BadRequest("missing ep (endpoint client name)")
    if len(endpoint) > 128:
        raise BadRequest("ep longer than 128 characters")
    pct: int | None = None
    if "pct" in values:
        try:
            pct = int(values["pct"])
        except ValueError:
            raise BadRequest(f"pct {values['pct']!r} is not a content-format number") from None
    return BootstrapQuery(endpoint, pct)


def check_identity(query: BootstrapQuery, requester: Requester | None, *, allow_unauthenticated: bool) -> str:
    """The endpoint may bootstrap only as itself (Transport TS, "Bootstrapping": the server compares
    ``ep`` with the (D)TLS identity and answers 4.00 on a mismatch)."""
    if requester is None:
        if not allow_unauthenticated:
            raise Unauthorized("bootstrap needs a DTLS/TLS-authenticated client; plain CoAP is disabled")
        return query.endpoint
    if requester.endpoint != query.endpoint:
        raise BadRequest(f"ep {query.endpoint!r} is not the authenticated identity {requester.endpoint!r}")
    return query.endpoint


class Bootstrapper:
    """Prepares and records bootstraps for one server process."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        box: SecretBox,
        enroller: Enroller,
        allow_unauthenticated: bool = False,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        listener: ChangeListener | None = None,
    ) -> None:
        self._pool = pool
        self._configs = BootstrapConfigCache(pool, listener=listener)
        self._box = box
        self._enroller = enroller
        self.allow_unauthenticated = allow_unauthenticated
        self._clock = clock
        self._live: dict[str, tuple[BootstrapSession, asyncio.Task[None]]] = {}
        self._records = GroupCommitWriter(pool, store.insert_records, name="bootstrap-records")
        self._records.start()
        self._tasks: set[asyncio.Task[None]] = set()

    async def prepare(
        self, endpoint: str, request_id: str
    ) -> tuple[BootstrapConfig, DeviceCredentials | None]:
        """The device's configuration (its own, else the default; 4.00 if neither) and credentials."""
        stored = await self._configs.effective(endpoint)
        if stored is None:
            raise BadRequest(f"no bootstrap configuration for {endpoint!r} and no default")
        config = stored.config
        if config.security_mode == "certificate":
            key, enrolled = await self._enroller.enroll_with_generated_key(
                identity=endpoint, service=LWM2M_SERVICE, request_id=request_id
            )
            credentials = DeviceCredentials(
                client_certificate_der=enrolled.certificate.public_bytes(Encoding.DER),
                private_key_der=key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
            )
        elif config.security_mode == "psk":
            identity, secret = endpoint, os.urandom(PSK_KEY_BYTES)
            await store.put_lwm2m_psk(self._pool, self._box, endpoint, identity, secret)
            credentials = DeviceCredentials(psk_identity=identity.encode(), psk_key=secret)
        elif config.oscore:
            credentials = DeviceCredentials(oscore=await self._new_oscore_context(endpoint))
        else:
            credentials = None  # est: the device makes its key and enrolls; nosec: nothing to give
        return config, credentials

    async def _new_oscore_context(self, endpoint: str) -> OscoreContext:
        """A fresh OSCORE context for ``endpoint``, stored for its LwM2M server. The device's Sender
        ID is the kid the server looks the context up by, so it is unique (drawn again if taken)."""
        for _ in range(_OSCORE_ATTEMPTS):
            sender_id = os.urandom(OSCORE_ID_BYTES)
            recipient_id = os.urandom(OSCORE_ID_BYTES)
            if sender_id == recipient_id:
                continue
            context = OscoreContext(
                master_secret=os.urandom(OSCORE_SECRET_BYTES),
                sender_id=sender_id,
                recipient_id=recipient_id,
                master_salt=os.urandom(OSCORE_SALT_BYTES),
            )
            try:
                await store.put_lwm2m_oscore(self._pool, self._box, endpoint, context)
            except store.SenderIdTaken:
                continue
            return context
        raise RuntimeError(f"no free OSCORE Sender ID in {_OSCORE_ATTEMPTS} draws")

    def register(self, endpoint: str, session: BootstrapSession, task: asyncio.Task[None]) -> None:
        """Track a server-driven session; an older one for the same endpoint is cancelled."""
        old = self._live.pop(endpoint, None)
        if old is not None:
            old_session, old_task = old
            old_session.cancel("superseded by a new Bootstrap-Request")
            old_task.cancel()
            log.info("bootstrap superseded", endpoint=endpoint)
        self._live[endpoint] = (session, task)
        task.add_done_callback(lambda _t: self._forget(endpoint, session))

    def _forget(self, endpoint: str, session: BootstrapSession) -> None:
        current = self._live.get(endpoint)
        if current is not None and current[0] is session:
            del self._live[endpoint]

    @property
    def live(self) -> int:
        """Server-driven sessions in progress."""
        return len(self._live)

    async def record(
        self,
        *,
        endpoint: str,
        method: str,
        transport: str,
        started_at: dt.datetime,
        outcome: str,
        reason: str | None,
        security_mode: str | None,
    ) -> None:
        """Append the outcome of a bootstrap (failures to write are logged, never raised)."""
        entry = store.BootstrapRecord(
            endpoint=endpoint,
            method=method,
            transport=transport,
            started_at=started_at,
            ended_at=self._clock(),
            outcome=outcome,
            reason=reason,
            security_mode=security_mode,
        )
        try:
            await self._records.record(entry)
        except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
            log.error("could not record a bootstrap", endpoint=endpoint, error=str(exc))
        metrics.observe_bootstrap_session(outcome)
        log.info("bootstrap finished", endpoint=endpoint, method=method, outcome=outcome, reason=reason)

    def now(self) -> dt.datetime:
        """The clock the records use."""
        return self._clock()

    @staticmethod
    def new_request_id() -> str:
        """Correlates a bootstrap's log lines and audit rows (16 hex digits, as EST's request ids)."""
        return os.urandom(8).hex()

    async def aclose(self) -> None:
        """Cancel live sessions (the server is stopping)."""
        for session, task in list(self._live.values()):
            session.cancel("server shutting down")
            task.cancel()
        for _, task in list(self._live.values()):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 (shutting down)
                pass
        await self._records.aclose()
