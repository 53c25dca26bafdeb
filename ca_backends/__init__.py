"""Pluggable certificate signers, selected by the ``issuer_type`` stored with each issuer.

Importing this package registers every backend that ships with the product.
"""

from . import builtin, cfssl, globalsign  # noqa: F401  (register BUILTIN, CFSSL_AUTH, GLOBAL_SIGN)
from .base import BackendFactory, CaBackend, IssuerConfig, Revoker, SignRequest, SignResult
from .errors import (
    BackendError,
    BackendMisconfigured,
    BackendRejected,
    BackendUnavailable,
    InvalidIssuerConfig,
    UnknownIssuerType,
)
from .registry import create, factory_for, known_types, register, validate

__all__ = [
    "BackendError",
    "BackendFactory",
    "BackendMisconfigured",
    "BackendRejected",
    "BackendUnavailable",
    "CaBackend",
    "InvalidIssuerConfig",
    "IssuerConfig",
    "Revoker",
    "SignRequest",
    "SignResult",
    "UnknownIssuerType",
    "create",
    "factory_for",
    "known_types",
    "register",
    "validate",
]
