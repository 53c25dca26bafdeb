"""Checking that a certificate a CA returned was signed by the chain the CA advertises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .errors import BackendMisconfigured

Chain = tuple[x509.Certificate, ...]


async def issued_by_chain(
    certificate: x509.Certificate,
    chain: Chain,
    refresh: Callable[[], Awaitable[Chain]],
    *,
    mismatch: str,
) -> Chain:
    """Return the chain whose first certificate signed ``certificate``.

    The cached chain is checked first; if it does not match, the CA may have rolled over, so the
    chain is fetched again (``refresh``) and checked once more. Still no match means the issuer is
    configured against the wrong CA (label, profile, account): :class:`BackendMisconfigured` with
    ``mismatch`` as its message.
    """
    for attempt in range(2):
        try:
            certificate.verify_directly_issued_by(chain[0])
            return chain
        except (ValueError, TypeError, InvalidSignature):
            if attempt == 0:
                chain = await refresh()
    raise BackendMisconfigured(mismatch)
