"""The aiocoap resource tree the server exposes."""

from __future__ import annotations

from aiocoap import resource as coap_resource

from .. import est
from ..enrollment import Enroller
from .est_resource import EstResource
from .identity import IdentityResolver


def build_site(enroller: Enroller, identify: IdentityResolver) -> coap_resource.Site:
    """``/.well-known/core`` plus EST at ``/.well-known/est`` and ``/est``."""
    site = coap_resource.Site()
    site.add_resource(
        [".well-known", "core"], coap_resource.WKCResource(site.get_resources_as_linkheader, impl_info=None)
    )
    for root in est.ROOTS:
        site.add_resource(list(root), EstResource(enroller, identify))
    return site
