"""The bootstrap-configuration cache against real Postgres: no query per device while only the
default exists, overrides seen through NOTIFY, bypassed while the listener is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bootstrap.bootstrap_config_cache import BootstrapConfigCache
from bootstrap.bootstrap_plan import BootstrapConfig
from bootstrap.store import bootstrap_configs as store
from bootstrap.store.migrations import migrate
from bootstrap.store.notifications import ChangeListener

from .conftest import fresh_database


@pytest.fixture
async def fresh_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A database of its own: the cache's fast path depends on the whole table."""
    async with fresh_database(postgres_admin_url, "lwm2m_cfg") as url:
        yield url


async def _until(predicate: object, limit_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _config(uri: str) -> BootstrapConfig:
    return BootstrapConfig(server_uri=uri, security_mode="nosec")


async def test_default_only_needs_no_query_per_device_and_overrides_are_seen(fresh_url: str) -> None:
    pool = await asyncpg.create_pool(fresh_url, min_size=1, max_size=4)
    await migrate(pool)
    listener = ChangeListener(fresh_url)
    cache = BootstrapConfigCache(pool, listener=listener)
    await listener.start()
    try:
        assert await cache.effective("dev-1") is None, "nothing configured"
        await store.put(pool, store.DEFAULT_SCOPE, _config("coap://default.example"))
        await _until(lambda: cache._state is None)
        first = await cache.effective("dev-1")
        assert first is not None and first.config.server_uri == "coap://default.example"
        queries = cache.queries
        for i in range(50):
            found = await cache.effective(f"dev-{i}")
            assert found is not None and found.scope == store.DEFAULT_SCOPE
        assert cache.queries == queries, "while only the default exists, lookups need no query"

        await store.put(pool, "dev-7", _config("coap://seven.example"))
        await _until(lambda: cache._state is None)
        own = await cache.effective("dev-7")
        other = await cache.effective("dev-8")
        assert own is not None and own.config.server_uri == "coap://seven.example"
        assert other is not None and other.scope == store.DEFAULT_SCOPE
        assert cache.queries > queries

        await store.delete(pool, "dev-7")
        await _until(lambda: cache._state is None)
        back = await cache.effective("dev-7")
        assert back is not None and back.scope == store.DEFAULT_SCOPE

        # A bulk load is one statement, one notification.
        await pool.copy_records_to_table(
            "bootstrap_configs",
            records=[(f"bulk-{i}", "coap://bulk.example", "nosec", "e") for i in range(100)],
            columns=["scope", "server_uri", "security_mode", "etag"],
        )
        await _until(lambda: cache._state is None)
        bulk = await cache.effective("bulk-42")
        assert bulk is not None and bulk.config.server_uri == "coap://bulk.example"
    finally:
        await listener.aclose()
        await pool.close()


async def test_bypassed_while_the_listener_is_down(fresh_url: str) -> None:
    pool = await asyncpg.create_pool(fresh_url, min_size=1, max_size=4)
    await migrate(pool)
    cache = BootstrapConfigCache(pool, listener=ChangeListener(fresh_url))  # never started
    try:
        await store.put(pool, store.DEFAULT_SCOPE, _config("coap://a.example"))
        assert (await cache.effective("x")).config.server_uri == "coap://a.example"  # type: ignore[union-attr]
        await store.put(pool, store.DEFAULT_SCOPE, _config("coap://b.example"))
        assert (await cache.effective("x")).config.server_uri == "coap://b.example"  # type: ignore[union-attr]
        assert cache.hits == 0
    finally:
        await pool.close()


def test_late_subscriptions_are_refused() -> None:
    listener = ChangeListener("postgresql://unused")
    listener._task = object()  # type: ignore[assignment]  # as if started
    with pytest.raises(RuntimeError, match="before the change listener starts"):
        listener.subscribe("new-channel", lambda _p: None)
