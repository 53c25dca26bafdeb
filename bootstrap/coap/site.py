"""The aiocoap resource tree the server exposes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiocoap import resource as coap_resource

from .. import est
from ..bootstrapper import Bootstrapper
from ..enrollment import Enroller
from .bootstrap_resources import BootstrapPackResource, BootstrapRequestResource
from .est_resource import EstResource
from .identity import IdentityResolver


def build_site(
    enroller: Enroller,
    identify: IdentityResolver,
    bootstrapper: Bootstrapper | None = None,
    context: Callable[[], Any] | None = None,
) -> coap_resource.Site:
    """``/.well-known/core``, EST at ``/.well-known/est`` and ``/est``, and (given a bootstrapper and
    the server context for role reversal) the LwM2M Bootstrap Interface at ``/bs`` and ``/bspack``."""
    site = coap_resource.Site()
    site.add_resource(
        [".well-known", "core"], coap_resource.WKCResource(site.get_resources_as_linkheader, impl_info=None)
    )
    for root in est.ROOTS:
        site.add_resource(list(root), EstResource(enroller, identify))
    if bootstrapper is not None and context is not None:
        site.add_resource(["bs"], BootstrapRequestResource(bootstrapper, identify, context))
        site.add_resource(["bspack"], BootstrapPackResource(bootstrapper, identify))
    return site
