"""Which bootstrap configuration applies to an endpoint, with no query per device in the common case.

Most deployments provision every device from the default configuration (scope ``*``); some add
per-endpoint overrides, up to one per device. This cache remembers the default and whether any
override exists. While none does, the default is the answer without touching Postgres; once one
does, every lookup is the single indexed query of :func:`bootstrap.store.bootstrap_configs.effective`
(a fleet bootstraps each device once, so caching per endpoint would not pay).

Any change to the table is announced on ``lwm2m_bootstrap_configs`` (a statement-level trigger,
migration 0006) and empties the cache. While the LISTEN connection is down the cache is bypassed,
and a load that a change overtakes does not fill it (as for the issuer cache).
"""

from __future__ import annotations

import asyncpg

from .store import bootstrap_configs as store
from .store.notifications import ChangeListener

__all__ = ["CHANNEL", "BootstrapConfigCache"]

CHANNEL = "lwm2m_bootstrap_configs"

_OVERRIDES = "SELECT EXISTS (SELECT 1 FROM bootstrap_configs WHERE scope <> $1)"


class BootstrapConfigCache:
    """The effective configuration per endpoint (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, *, listener: ChangeListener | None = None) -> None:
        self._pool = pool
        self._listener = listener
        if listener is not None:
            listener.subscribe(CHANNEL, lambda _payload: self.invalidate())
        self._state: tuple[bool, store.StoredConfig | None] | None = None
        self._generation = 0
        #: Lookups answered without a query, and lookups that needed one (for tests and benchmarks).
        self.hits = 0
        self.queries = 0

    def invalidate(self) -> None:
        """Forget what is cached (called on NOTIFY)."""
        self._generation += 1
        self._state = None

    async def effective(self, endpoint: str) -> store.StoredConfig | None:
        """The endpoint's own configuration, else the default, else ``None``."""
        live = self._listener is not None and self._listener.connected
        state = self._state if live else None
        if state is None:
            generation = self._generation
            self.queries += 1
            overrides = bool(await self._pool.fetchval(_OVERRIDES, store.DEFAULT_SCOPE))
            state = (overrides, await store.effective(self._pool, store.DEFAULT_SCOPE))
            if live and generation == self._generation:
                self._state = state
        else:
            self.hits += 1
        overrides, default = state
        if not overrides:
            return default
        self.queries += 1
        return await store.effective(self._pool, endpoint)
