"""``coaps+tcp://`` (RFC 8323) over TLS with client certificates, on aiocoap's TCP transport.

aiocoap's own TLS server neither requires client certificates nor exposes them, and binds one port
above the one it is given; this adapter keeps its RFC 8323 framing and replaces the two ends: an
``ssl.SSLContext`` that requires and verifies client certificates against the same trust anchors as
DTLS (swapped in per connection when they change), and connections whose
``authenticated_claims`` carry the verified :class:`~bootstrap.identity.DeviceIdentity`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any, Protocol

import structlog
from aiocoap.transports.tcp import TcpConnection
from aiocoap.transports.tls import TLSServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ca_backends.secret_files import private_file

from ..identity import DeviceIdentity
from ..server_identity import ServerCredentials

log = structlog.get_logger(__name__)


class TrustAnchors(Protocol):
    """Where the trusted CAs come from (``DeviceTrust`` in the server)."""

    version: int

    def trusted_cas(self) -> Sequence[x509.Certificate]:
        """The CAs device certificates must chain to."""
        ...


class _IdentifiedConnection(TcpConnection):  # type: ignore[misc]
    """A TLS connection that reports the client certificate's CN as its authenticated claim."""

    _claims: list[DeviceIdentity]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._claims = []
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            certificate = x509.load_der_x509_certificate(der)
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if names and isinstance(names[0].value, str):
                self._claims = [DeviceIdentity("x509", names[0].value, certificate)]
        super().connection_made(transport)

    @property
    def authenticated_claims(self) -> list[DeviceIdentity]:
        return self._claims


class _ClientCertTLSServer(TLSServer):  # type: ignore[misc]
    """aiocoap's TLS server, bound to exactly the given port, with identified connections."""

    @classmethod
    async def create_bound(
        cls,
        bind: tuple[str, int],
        tman: Any,
        log: Any,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        *,
        reuse_port: bool = False,
    ) -> _ClientCertTLSServer:
        self = cls()
        self._tokenmanager = tman
        self.log = log

        def new_connection() -> _IdentifiedConnection:
            connection = _IdentifiedConnection(self, log, loop, is_server=True)
            self._pool.add(connection)
            return connection

        self.server = await loop.create_server(
            new_connection, bind[0], bind[1], ssl=context, reuse_port=reuse_port or None
        )
        return self


class TlsContexts:
    """Builds server contexts and swaps in a fresh one when the trust anchors change.

    An ``SSLContext`` cannot forget a CA once loaded, so each change of the anchors makes a new
    context; the SNI callback of the listening context hands every new connection the current one.
    """

    def __init__(self, credentials: ServerCredentials, trust: TrustAnchors) -> None:
        self._credentials = credentials
        self._trust = trust
        self._version = -1
        self._current = self._build()
        self.listening = self._build()
        self.listening.sni_callback = self._select

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["coap"])  # RFC 8323 §4.1
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._credentials.chain)
        pem += self._credentials.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with private_file(pem) as path:
            context.load_cert_chain(path)
        anchors = self._trust.trusted_cas()
        if anchors:
            context.load_verify_locations(
                cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in anchors)
            )
        self._version = self._trust.version
        return context

    def current(self) -> ssl.SSLContext:
        """The context for a new connection (rebuilt if the anchors changed)."""
        if self._trust.version != self._version:
            self._current = self._build()
        return self._current

    def _select(self, ssl_object: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        ssl_object.context = self.current()


async def start_tls_server(
    context: Any,
    bind: tuple[str, int],
    credentials: ServerCredentials,
    trust: TrustAnchors,
    *,
    reuse_port: bool = False,
) -> None:
    """Add a ``coaps+tcp`` listener on ``bind`` to an aiocoap server context."""
    contexts = TlsContexts(credentials, trust)
    loop = asyncio.get_running_loop()
    await context._append_tokenmanaged_transport(
        lambda tman: _ClientCertTLSServer.create_bound(
            bind, tman, context.log, loop, contexts.listening, reuse_port=reuse_port
        )
    )
    log.info("listening", transport="coaps+tcp", host=bind[0], port=bind[1])
