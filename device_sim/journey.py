"""A simulated device's full journey: handshake, bootstrap (pack or server-driven), EST, checks.

The device answers the bootstrap server's requests (Discover, Delete, Write, Finish) with the
sans-I/O :class:`~device_sim.lwm2m_client.SimLwm2mClient` behind its CoAP link, applies what it is
given to its own object store as a real client would, enrolls by EST when told Security Mode 4, and
then checks that what it holds is consistent: a server URI, the server certificate it was given,
and its own certificate chain up to the CA it fetched with ``crts``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_private_key

from bootstrap.bootstrap_plan import OscoreContext
from bootstrap.coap.wire import dotted
from bootstrap.errors import BadRequest
from bootstrap.lwm2m import OscoreResource as _OSC

from .coap_link import Response
from .connection import DeviceConnection
from .device import SimDevice, VerificationError, verify_chain
from .fleet import CHANGED, CONTENT, EstClient, FleetOptions, connect
from .lwm2m_client import ServerAccount, SimLwm2mClient

SENML_CBOR = 112
#: Formats a Bootstrap-Pack can come in (SenML-JSON, SenML-CBOR, LwM2M-CBOR).
PACK_FORMATS = (110, 112, 11544)
SECURITY_MODE_PSK, SECURITY_MODE_CERTIFICATE, SECURITY_MODE_NOSEC, SECURITY_MODE_EST = 0, 2, 3, 4


class JourneyError(Exception):
    """The journey failed; ``reason`` is short, for the failures-by-reason table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientSide:
    """The device's answers to the server's requests: the simulated LwM2M client, and an event set
    once it accepted a Bootstrap-Finish (or a pack), or once its session ended (``lost`` says why).
    Subclass :meth:`handle` to misbehave."""

    def __init__(self, client: SimLwm2mClient) -> None:
        self.client = client
        self.finished = asyncio.Event()
        self.lost: BaseException | None = None

    def channel_closed(self, error: BaseException) -> None:
        """The session ended: nobody will send a Bootstrap-Finish now, so stop waiting for one."""
        self.lost = error
        self.finished.set()

    async def handle(
        self, method: str, path: str, payload: bytes, content_format: int | None, accept: int | None
    ) -> Response:
        """Answer one request (a :data:`~.coap_link.RequestHandler`)."""
        response = self.client.handle(method, path, payload, content_format, accept)
        if self.client.finished:
            self.finished.set()
        return response


@dataclass(frozen=True)
class JourneyResult:
    """What a device ended up with."""

    method: str
    """``pack`` or ``request``."""
    account: ServerAccount
    certificate: x509.Certificate | None


async def _bootstrap(
    connection: DeviceConnection, side: ClientSide, options: FleetOptions, endpoint: str, use_pack: bool
) -> str:
    fmt = options.lwm2m_format
    if use_pack:
        accept = fmt if fmt in PACK_FORMATS else SENML_CBOR
        response = await connection.request(
            "GET", ("bspack",), query=(f"ep={endpoint}",), accept=accept, limit_s=options.timeout_s
        )
        if response.code == CONTENT:
            side.client.apply_pack(response.payload, accept)
            return "pack"
        # Anjay falls back to a Bootstrap-Request on anything but 2.05.
    query = (f"ep={endpoint}",) if fmt is None else (f"ep={endpoint}", f"pct={fmt}")
    response = await connection.request("POST", ("bs",), query=query, limit_s=options.timeout_s)
    if response.code != CHANGED:
        raise JourneyError(
            f"bootstrap request {dotted(response.code)} {response.payload.decode(errors='replace')[:50]}"
        )
    try:
        async with asyncio.timeout(options.timeout_s):
            await side.finished.wait()
    except TimeoutError:
        raise JourneyError("no Bootstrap-Finish") from None
    if not side.client.finished:
        raise JourneyError(f"session ended before Bootstrap-Finish ({side.lost})")
    return "request"


def _check_account(account: ServerAccount | None) -> ServerAccount:
    if account is None:
        raise JourneyError("no LwM2M server account after bootstrap")
    if not account.uri.startswith(("coap://", "coaps://", "coap+tcp://", "coaps+tcp://")):
        raise JourneyError("bad LwM2M server URI")
    if account.security_mode in (SECURITY_MODE_EST, SECURITY_MODE_CERTIFICATE):
        try:
            x509.load_der_x509_certificate(account.server_certificate_der)
        except ValueError:
            raise JourneyError("server certificate (/0/x/4) does not parse") from None
    if account.security_mode == SECURITY_MODE_PSK and not (
        account.public_key_or_identity and account.secret_key
    ):
        raise JourneyError("PSK account without identity or key")
    if account.security_mode == SECURITY_MODE_NOSEC and not account.uri.startswith(
        ("coap://", "coap+tcp://")
    ):
        raise JourneyError("NoSec account with a secure URI")
    if account.oscore is not None:
        _check_oscore(account.oscore)
    return account


def _check_oscore(instance: Mapping[int, object]) -> None:
    """An OSCORE context a client could use, by the rules the server plans with (RFC 8613 §3.3)."""
    if not instance:
        raise JourneyError("/0/x/17 links an OSCORE instance that was not written")
    secret, sender, recipient = (
        instance.get(r) for r in (_OSC.MASTER_SECRET, _OSC.SENDER_ID, _OSC.RECIPIENT_ID)
    )
    if not (isinstance(secret, bytes) and isinstance(sender, bytes) and isinstance(recipient, bytes)):
        raise JourneyError("OSCORE master secret, sender or recipient ID missing")
    try:
        OscoreContext(master_secret=secret, sender_id=sender, recipient_id=recipient).check()
    except BadRequest as exc:
        raise JourneyError(f"unusable OSCORE context: {exc.message}") from None


async def run_journey(
    device: SimDevice, options: FleetOptions, ca_certificates: list[x509.Certificate], *, use_pack: bool
) -> JourneyResult:
    """One device's whole journey over its own connection; raises :class:`JourneyError` on failure.

    ``ca_certificates`` is what ``crts`` answered: its self-signed members are the trust anchors.
    """
    anchors = [c for c in ca_certificates if c.issuer == c.subject]
    client = SimLwm2mClient(
        endpoint=device.endpoint,
        lwm2m_version="1.2" if use_pack else ("1.0" if options.lwm2m_format is None else "1.1"),
        bootstrap_server_uri=options.server,
    )
    side = ClientSide(client)
    connection = await connect(device, options, side.handle)
    connection.link.on_close = side.channel_closed
    try:
        method = await _bootstrap(connection, side, options, device.endpoint, use_pack)
        account = _check_account(client.server_account())
        certificate: x509.Certificate | None = None
        now = dt.datetime.now(dt.UTC)
        if account.security_mode == SECURITY_MODE_EST:
            # Security Mode 4: make the key (ours, from the pool) and enroll over the same session.
            response = await EstClient(connection, options).enroll(device.csr_der())
            if response.code != CHANGED:
                raise JourneyError(
                    f"EST {dotted(response.code)} {response.payload.decode(errors='replace')[:50]}"
                )
            certificate = device.check_enrolled(response.payload, response.content_format, anchors, now=now)
        elif account.security_mode == SECURITY_MODE_CERTIFICATE:
            # Server-side key generation: /0/x/3 holds our certificate, /0/x/5 its key (RFC 5958).
            certificate = x509.load_der_x509_certificate(account.public_key_or_identity)
            key = load_der_private_key(account.secret_key, password=None)
            if certificate.public_key() != key.public_key():
                raise JourneyError("certificate (/0/x/3) and key (/0/x/5) do not match")
            verify_chain(certificate, ca_certificates, anchors, now=now)
        return JourneyResult(method, account, certificate)
    except VerificationError as exc:
        raise JourneyError(f"verify: {exc.reason}") from None
    finally:
        connection.close()
