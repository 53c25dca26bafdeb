"""Postgres access: the pool and embedded server, migrations, and one module per table group."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: Anything queries can run on: a pool, a connection, or a connection acquired from a pool.
Queryable: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
