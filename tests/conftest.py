"""Shared fixtures: a real Postgres (embedded by default, ``DATABASE_URL`` for another), a fresh
database per test session, and a running server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bootstrap.config import Settings
from bootstrap.secretbox import SecretBox
from bootstrap.server import BootstrapServer


def free_udp_port() -> int:
    """A currently unused UDP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_tcp_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """URL of a Postgres server tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    root = Path(tempfile.mkdtemp(prefix="lwm2m-test-pg-"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, empty database on the test server (its URL keeps ``?host=`` for the embedded
    server's socket), dropped with its connections afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(admin_url, name)
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test session (dropped afterwards)."""
    async with fresh_database(postgres_admin_url, "lwm2m_test") as url:
        yield url


@pytest.fixture(scope="session")
def master_key_b64() -> str:
    """The master key used by every server in the session."""
    import base64

    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
def box(master_key_b64: str) -> SecretBox:
    """A secret box with the session's master key."""
    import base64

    return SecretBox(base64.b64decode(master_key_b64))


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated pool on the session database."""
    from bootstrap.store.migrations import migrate

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    await migrate(pool)
    yield pool
    await pool.close()


def make_settings(database_url: str, master_key_b64: str, tmp: Path, **overrides: Any) -> Settings:
    """Server settings on loopback with a free CoAP port."""
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "master_key": master_key_b64,
        "coap_bind": ("127.0.0.1", free_udp_port()),
        "coaps_bind": ("127.0.0.1", free_udp_port()),
        "coaps_tcp_bind": ("127.0.0.1", free_tcp_port()),
        "admin_bind": ("127.0.0.1", free_tcp_port()),
        "insecure_coap_enrollment": True,
        "log_format": "console",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def server(
    database_url: str, master_key_b64: str, pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BootstrapServer]:
    """A running server (plain CoAP on loopback, insecure enrollment on) shared by the session."""
    settings = make_settings(database_url, master_key_b64, tmp_path_factory.mktemp("server"))
    instance = BootstrapServer(settings)
    await instance.start()
    yield instance
    await instance.stop(drain_seconds=2)


@pytest.fixture(scope="session")
def server_uri(server: BootstrapServer) -> str:
    """``coap://127.0.0.1:PORT`` of the session server."""
    assert server.settings.coap_bind is not None
    host, port = server.settings.coap_bind
    return f"coap://{host}:{port}"


@pytest.fixture(scope="session")
async def coap_client() -> AsyncIterator[Any]:
    """An aiocoap client context."""
    from aiocoap import Context

    context = await Context.create_client_context()
    yield context
    await context.shutdown()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for endpoint names and references."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A manufacturer CA for simulated devices (device_sim.provisioning.FactoryCa)."""
    from device_sim.provisioning import FactoryCa

    return FactoryCa.load_or_create(tmp_path_factory.mktemp("factory"))


@pytest.fixture(scope="session")
async def trusted_factory(factory: Any, pool: asyncpg.Pool, server: BootstrapServer) -> Any:
    """The manufacturer CA, registered as a bootstrap trust anchor and seen by the running server."""
    from cryptography.hazmat.primitives import serialization

    from bootstrap.store import trust

    pem = factory.certificate.public_bytes(serialization.Encoding.PEM).decode()
    await trust.add(pool, name=f"factory-{uuid.uuid4().hex[:8]}", service="bootstrap", certificate_pem=pem)
    assert server.trust is not None
    for _ in range(100):
        if factory.certificate in server.trust.trusted_cas():
            return factory
        await asyncio.sleep(0.02)
    raise AssertionError("the server never loaded the new trust anchor")


__all__ = ["asyncio", "free_tcp_port", "free_udp_port", "make_settings"]
