"""A simulated device's connection to the server: its channel and the CoAP link on it.

Over ``coaps://`` the channel is the device's own DTLS session (:class:`~.dtls_client.ClientSession`,
with its factory certificate or PSK); over ``coap://`` (development servers only) a UDP socket of
its own. Either way the device speaks CoAP through a :class:`~.coap_link.CoapLink`.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from .coap_link import CoapLink, RequestHandler
from .dtls_client import (
    ClientContext,
    ClientCredentials,
    ClientSession,
    open_datagram_endpoint,
    shared_context,
)

__all__ = ["DeviceConnection", "server_address"]


def server_address(uri: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a ``coap://`` or ``coaps://`` base URI (default ports 5683/5684)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("coap", "coaps") or not parts.hostname:
        raise ValueError(f"not a coap:// or coaps:// URI: {uri!r}")
    secure = parts.scheme == "coaps"
    return parts.hostname, parts.port or (5684 if secure else 5683), secure


class _DtlsOwner:
    """Ties a DTLS session to the device's link (the session's :class:`~.dtls_client.SessionOwner`)."""

    def __init__(self, credentials: ClientCredentials, link: CoapLink, mtu: int) -> None:
        self.credentials = credentials
        self.client_context: ClientContext = shared_context(credentials)
        self.max_datagram_size = mtu - 48
        self.link = link

    def plaintext_received(self, session: ClientSession, data: bytes) -> None:
        self.link.datagram_received(data)

    def session_ended(self, session: ClientSession, reason: str) -> None:
        self.link.close(ConnectionError(f"DTLS session ended: {reason}"))


class _UdpChannel(asyncio.DatagramProtocol):
    """A plain UDP socket connected to the server (``coap://``)."""

    def __init__(self, link: CoapLink) -> None:
        self.link = link
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.link.datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the retransmissions find out

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.close(ConnectionError("socket closed"))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)


class DeviceConnection:
    """One device's connection; :meth:`open` it, make requests, :meth:`close` it."""

    def __init__(self, link: CoapLink, session: ClientSession | None, channel: _UdpChannel | None) -> None:
        self.link = link
        self.request = link.request
        """One request and its whole response (:meth:`.coap_link.CoapLink.request`)."""
        self._session = session
        self._channel = channel

    @classmethod
    async def open(
        cls,
        server: str,
        credentials: ClientCredentials | None,
        *,
        handler: RequestHandler | None = None,
        handshake_limit_s: float = 30.0,
        mtu: int = 1280,
    ) -> DeviceConnection:
        """Connect to ``server`` (a ``coap://`` or ``coaps://`` base URI); over ``coaps://`` the DTLS
        handshake with ``credentials`` is complete when this returns. ``handler`` answers the
        server's requests. Raises ``OSError`` or :class:`~.dtls_client.DtlsClientError`."""
        host, port, secure = server_address(server)
        if not secure:
            channel = _UdpChannel(CoapLink(lambda data: channel.send(data), handler))
            await open_datagram_endpoint(channel, host, port)
            return cls(channel.link, None, channel)
        if credentials is None:
            raise ValueError("coaps:// needs device credentials")
        sessions: list[ClientSession] = []
        link = CoapLink(lambda data: sessions[0].send_plaintext(data), handler)
        session = ClientSession(_DtlsOwner(credentials, link, mtu), host, port)
        sessions.append(session)
        await session.connect()
        await session.handshake(handshake_limit_s)
        return cls(link, session, None)

    def close(self) -> None:
        """Close the session (close_notify) or the socket, and fail what is still in flight."""
        self.link.close(ConnectionError("closed by the device"))
        if self._session is not None:
            self._session.close()
        if self._channel is not None and self._channel.transport is not None:
            self._channel.transport.close()
