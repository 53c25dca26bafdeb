"""The running server: wires storage, issuers, the enroller and the CoAP transports together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
from typing import Any

import structlog
from aiocoap import Context

from . import event_loop
from .bootstrapper import Bootstrapper
from .coap.bootstrap_resources import BootstrapEndpoint
from .coap.direct import LaneRoutes
from .coap.dtls_transport import DtlsServer, DtlsServerSettings, start_dtls_server
from .coap.est_resource import EstEndpoint
from .coap.identity import IdentityResolver
from .coap.site import build_site
from .coap.tls_transport import start_tls_server
from .config import Settings
from .device_trust import DeviceTrust
from .enrollment import Enroller
from .gc_tuning import settle_garbage_collector
from .issuer_directory import IssuerDirectory
from .issuer_service import IssuerService
from .policy import EnrollmentPolicy
from .secretbox import SecretBox, load_master_key
from .server_identity import ensure_issued, load_files
from .store import audit
from .store.audit import AuditWriter
from .store.database import Database
from .store.notifications import ChangeListener

log = structlog.get_logger(__name__)


def open_secret_box(settings: Settings) -> SecretBox:
    """The master key from the environment or key file; created on first use of the data directory."""
    return SecretBox(load_master_key(settings.master_key, settings.key_file, create=True))


async def open_database(settings: Settings, **pool: Any) -> Database:
    """The database named by the settings (embedded when no URL), migrated."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await Database.open(database_url=settings.database_url, data_dir=settings.data_dir, **pool)


class BootstrapServer:
    """One server process: start, serve, stop cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database: Database | None = None
        self.issuers: IssuerDirectory | None = None
        self.audit: AuditWriter | None = None
        self.enroller: Enroller | None = None
        self.coap: Context | None = None
        self.listener: ChangeListener | None = None
        self.trust: DeviceTrust | None = None
        self.dtls: DtlsServer | None = None
        self.bootstrapper: Bootstrapper | None = None
        self.admin: Any = None

    async def start(self) -> None:
        """Open storage, load the CA, bind the transports."""
        settings = self.settings
        log.info("starting", event_loop=event_loop.implementation(), pid=os.getpid())
        box = open_secret_box(settings)
        self.database = await open_database(settings, min_size=2, max_size=10)
        pool = self.database.pool
        self.listener = ChangeListener(self.database.dsn)
        self.issuers = IssuerDirectory(pool, box, listener=self.listener)
        self.trust = DeviceTrust(pool, box, listener=self.listener)
        await self.issuers.start()
        await self.trust.start()
        self.audit = AuditWriter(pool)
        self.audit.start()
        self.enroller = Enroller(
            issuers=self.issuers,
            audit=self.audit,
            policy=EnrollmentPolicy(
                validity=dt.timedelta(days=settings.cert_validity_days),
                organization=settings.subject_organization,
                organizational_unit=settings.subject_organizational_unit,
            ),
            allow_unauthenticated=settings.insecure_coap_enrollment,
            issued_lookup=lambda fingerprint: audit.issued_record(pool, fingerprint),
            max_pending=settings.max_pending_signatures,
            retry_after=settings.retry_after_seconds,
        )
        if settings.insecure_coap_enrollment:
            log.warning(
                "INSECURE: EST enrollment over plain CoAP is enabled; identities are not authenticated"
            )
        self.bootstrapper = Bootstrapper(
            pool=pool,
            box=box,
            enroller=self.enroller,
            allow_unauthenticated=settings.insecure_coap_enrollment,
            listener=self.listener,
        )
        await self.listener.start()  # after every cache has subscribed
        identify = IdentityResolver(self.trust.endpoint_for_psk_identity)
        est_endpoint = EstEndpoint(self.enroller, identify)
        bootstrap_endpoint = BootstrapEndpoint(self.bootstrapper, identify, lambda: self.coap)
        site = build_site(est_endpoint, bootstrap_endpoint)
        # The server's certificate before any listener: once anything answers, the certificate
        # the secure listeners will present is the one stored (what devices that pin it hold).
        credentials = None
        if settings.coaps_bind is not None or settings.coaps_tcp_bind is not None:
            credentials = (
                load_files(settings.tls_cert_file, settings.tls_key_file)
                if settings.tls_cert_file is not None and settings.tls_key_file is not None
                else await ensure_issued(pool, box, settings.server_names)
            )
        if settings.coap_bind is not None:
            self.coap = await Context.create_server_context(
                site, bind=settings.coap_bind, transports=["udp6"]
            )
            log.info("listening", transport="coap", host=settings.coap_bind[0], port=settings.coap_bind[1])
        else:
            # Not create_server_context(transports=[]): aiocoap takes an empty list as "the defaults"
            # and would listen on 5683. A bare context gets only the secure transports added below.
            self.coap = Context(loop=asyncio.get_running_loop(), serversite=site)
        if credentials is not None:
            if settings.coaps_bind is not None:
                self.dtls = await start_dtls_server(
                    self.coap,
                    DtlsServerSettings(
                        bind=settings.coaps_bind,
                        certificate_chain=credentials.chain,
                        private_key=credentials.private_key,
                        mtu=settings.dtls_mtu,
                        idle_timeout=settings.dtls_idle_timeout,
                        max_sessions=settings.dtls_max_sessions,
                        reuse_port=settings.reuse_port,
                        receive_buffer=settings.dtls_receive_buffer,
                    ),
                    self.trust,
                    lane=LaneRoutes(
                        est=est_endpoint.handle,
                        bootstrap_request=bootstrap_endpoint.request,
                        bootstrap_pack=bootstrap_endpoint.pack,
                    ),
                )
                host, port = self.dtls.address
                log.info("listening", transport="coaps", host=host, port=port)
            if settings.coaps_tcp_bind is not None:
                await start_tls_server(
                    self.coap,
                    settings.coaps_tcp_bind,
                    credentials,
                    self.trust,
                    reuse_port=settings.reuse_port,
                )

        if settings.admin_bind is not None:
            await self._start_admin(pool, box)

    async def _start_admin(self, pool: Any, box: SecretBox) -> None:
        from .admin import create_app, server_ssl_context, start_admin

        settings = self.settings
        assert settings.admin_bind is not None
        registry = None
        if settings.metrics_dir:  # workers: every process writes its metrics there; /metrics sums them
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=settings.metrics_dir)  # type: ignore[no-untyped-call]
        app = create_app(
            pool=pool,
            box=box,
            issuers=IssuerService(pool, box),
            ready_check=self.ready,
            metrics_registry=registry,
        )
        tls = (
            server_ssl_context(str(settings.admin_tls_cert_file), str(settings.admin_tls_key_file))
            if settings.admin_tls_cert_file and settings.admin_tls_key_file
            else None
        )
        host, port = settings.admin_bind
        self.admin = await start_admin(app, host, port, tls, reuse_port=settings.reuse_port)

    async def ready(self) -> bool:
        """Ready to serve devices: transports bound and the CA loaded (for ``/ready``)."""
        return self.coap is not None and self.issuers is not None and self.enroller is not None

    async def stop(self, *, drain_seconds: float = 10.0) -> None:
        """Let requests in flight finish (up to ``drain_seconds``), then close everything."""
        if self.enroller is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.enroller.idle(), drain_seconds)
        if self.dtls is not None and self.dtls.direct is not None:  # answers still being sent
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dtls.direct.drain(), drain_seconds)
        if self.admin is not None:
            await self.admin.cleanup()
            self.admin = None
        if self.bootstrapper is not None:
            await self.bootstrapper.aclose()
        if self.coap is not None:
            if self.coap.request_interfaces:  # aiocoap's shutdown fails on a context with none
                await self.coap.shutdown()
            self.coap = None
        if self.listener is not None:
            await self.listener.aclose()
        if self.trust is not None:
            await self.trust.aclose()
        if self.audit is not None:
            await self.audit.aclose()
        if self.issuers is not None:
            await self.issuers.aclose()
        if self.database is not None:
            await self.database.close()
            self.database = None
        log.info("stopped")


async def serve_forever(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    server = BootstrapServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        settle_garbage_collector()
        log.info("ready")
        await stop.wait()
        log.info("shutting down")
    finally:
        with contextlib.suppress(Exception):
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        await server.stop()
