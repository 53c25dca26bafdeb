"""The aiocoap resource tree the server exposes."""

from __future__ import annotations

import copy
from typing import Any

from aiocoap import resource as coap_resource
from aiocoap.options import Options

from .. import est
from .bootstrap_resources import BootstrapEndpoint, BootstrapPackResource, BootstrapRequestResource
from .est_resource import EstEndpoint, EstResource


class LeanSite(coap_resource.Site):  # type: ignore[misc]
    """aiocoap's ``Site`` without a deep copy of every request.

    To hand a child its remaining path, ``Site`` deep-copies the whole message and computes the
    request URI each time; on the enrollment path that was a tenth of the server's CPU per
    certificate. Here the message and its option table are copied shallowly (each option list
    copied, the option values shared: they are immutable) and only the path is replaced.
    """

    def _find_child_and_pathstripped_message(self, request: Any) -> tuple[Any, Any]:
        path = request.opt.uri_path
        if path in self._resources:
            return self._resources[path], _with_path(request, ())
        remainder: list[str] = []
        while path:
            remainder.insert(0, path[-1])
            path = path[:-1]
            if path in self._subsites:
                return self._subsites[path], _with_path(
                    request, () if remainder == [""] else tuple(remainder)
                )
        raise KeyError()


def _with_path(request: Any, path: tuple[str, ...]) -> Any:
    stripped = copy.copy(request)
    options = Options()
    options._options = {number: list(values) for number, values in request.opt._options.items()}
    options.uri_path = path
    stripped.opt = options
    return stripped


def build_site(est_endpoint: EstEndpoint, bootstrap: BootstrapEndpoint | None = None) -> coap_resource.Site:
    """``/.well-known/core``, ``est_endpoint`` at ``/.well-known/est`` and ``/est``, and (given the
    bootstrap endpoint) the LwM2M Bootstrap Interface at ``/bs`` and ``/bspack``."""
    site = LeanSite()
    site.add_resource(
        [".well-known", "core"], coap_resource.WKCResource(site.get_resources_as_linkheader, impl_info=None)
    )
    for root in est.ROOTS:
        site.add_resource(list(root), EstResource(est_endpoint))
    if bootstrap is not None:
        site.add_resource(["bs"], BootstrapRequestResource(bootstrap))
        site.add_resource(["bspack"], BootstrapPackResource(bootstrap))
    return site
