"""Registry of CA backends keyed by the ``issuer_type`` string stored in Postgres.

Each backend module registers its factory on import; :func:`create` is the only way the server
makes backends, so an unknown type or a bad configuration fails when an issuer is created, not when
a device arrives (smallstep ``apiv1/registry.go``, aioquic ``congestion/base.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import BackendFactory, CaBackend, IssuerConfig
from .errors import UnknownIssuerType

_factories: dict[str, type[BackendFactory]] = {}


def register(factory: type[BackendFactory]) -> type[BackendFactory]:
    """Register a backend class under its ``issuer_type`` (usable as a class decorator)."""
    _factories[factory.issuer_type] = factory
    return factory


def known_types() -> list[str]:
    """The registered issuer types, sorted."""
    return sorted(_factories)


def factory_for(issuer_type: str) -> type[BackendFactory]:
    """The factory registered for ``issuer_type``; raises :class:`UnknownIssuerType`."""
    try:
        return _factories[issuer_type]
    except KeyError:
        raise UnknownIssuerType(issuer_type, known_types()) from None


def validate(issuer_type: str, attributes: Mapping[str, str], credentials: Mapping[str, str]) -> None:
    """Validate an issuer's configuration without creating a backend."""
    factory_for(issuer_type).validate(attributes, credentials)


def create(issuer_type: str, config: IssuerConfig) -> CaBackend:
    """Create the backend for a stored issuer."""
    return factory_for(issuer_type).from_config(config)
