"""Prometheus metrics of the server, served by the admin API at ``/metrics``.

The process-wide registry :data:`REGISTRY` holds every metric; the signing path, the DTLS engine and
the bootstrap sessions update them through the small functions below, so label names and values
stay consistent. Labels are bounded: ``service`` and ``issuer`` come from configuration (service
references, issuer names or ``builtin``), never from device input.

For isolated tests, :func:`new_registry` plus :meth:`Metrics.create` give a separate set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)

#: Buckets (seconds) for one enrollment, from CSR received to certificate returned; third-party CAs
#: take up to tens of seconds (GlobalSign polling).
ENROLLMENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ADMIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process, platform and GC collectors unless ``process_metrics`` is false."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
    return registry


@dataclass(frozen=True)
class Metrics:
    """Every metric of the server, registered in one registry."""

    registry: CollectorRegistry
    enrollments: Counter
    enrollment_seconds: Histogram
    handshakes: Counter
    backend_errors: Counter
    live_sessions: Gauge
    bootstrap_sessions: Counter
    admin_requests: Counter
    admin_request_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        """Create and register the metrics in ``registry``."""
        return cls(
            registry=registry,
            enrollments=Counter(
                "lwm2m_enrollments",
                "Certificate enrollments (simpleenroll/simplereenroll) by outcome.",
                ["service", "issuer", "outcome"],
                registry=registry,
            ),
            enrollment_seconds=Histogram(
                "lwm2m_enrollment_seconds",
                "Time from CSR received to certificate returned.",
                ["service", "issuer"],
                buckets=ENROLLMENT_BUCKETS,
                registry=registry,
            ),
            handshakes=Counter(
                "lwm2m_handshakes",
                "(D)TLS handshakes by security mode (psk, certificate, ...) and outcome.",
                ["mode", "outcome"],
                registry=registry,
            ),
            backend_errors=Counter(
                "lwm2m_backend_errors",
                "Errors from CA backends by kind (unavailable, rejected, misconfigured, ...).",
                ["issuer", "kind"],
                registry=registry,
            ),
            live_sessions=Gauge(
                "lwm2m_live_sessions",
                "Open (D)TLS or CoAP sessions by transport.",
                ["transport"],
                registry=registry,
            ),
            bootstrap_sessions=Counter(
                "lwm2m_bootstrap_sessions",
                "Finished bootstrap sessions by outcome.",
                ["outcome"],
                registry=registry,
            ),
            admin_requests=Counter(
                "lwm2m_admin_requests",
                "Admin API requests by method, route and status.",
                ["method", "route", "status"],
                registry=registry,
            ),
            admin_request_seconds=Histogram(
                "lwm2m_admin_request_seconds",
                "Admin API request duration.",
                ["method", "route"],
                buckets=ADMIN_BUCKETS,
                registry=registry,
            ),
        )


#: The process-wide registry (what ``/metrics`` serves unless told otherwise).
REGISTRY = new_registry()
#: The process-wide metrics.
METRICS = Metrics.create(REGISTRY)


_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: label sets are few (services, issuers, outcomes) and
    prometheus-client's lookup, with its validation and lock, was a visible cost per certificate."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def observe_enrollment(service: str, issuer: str, outcome: str, seconds: float) -> None:
    """Count one enrollment and its duration.

    Args:
        service: Service reference (``LWM2M`` or a custom one).
        issuer: Issuer name, or ``builtin``.
        outcome: ``success``, or a short failure label (``rejected``, ``unavailable``, ``bad_csr``...).
        seconds: Time from CSR received to answer.
    """
    _child(METRICS.enrollments, service, issuer, outcome).inc()
    _child(METRICS.enrollment_seconds, service, issuer).observe(seconds)


def observe_handshake(mode: str, outcome: str) -> None:
    """Count one (D)TLS handshake.

    Args:
        mode: ``psk``, ``certificate`` or ``rpk``.
        outcome: ``success`` or a short failure label (``unknown_identity``, ``bad_certificate``...).
    """
    _child(METRICS.handshakes, mode, outcome).inc()


def observe_backend_error(issuer: str, kind: str) -> None:
    """Count one CA backend error.

    Args:
        issuer: Issuer name.
        kind: :attr:`ca_backends.BackendError.kind` (``unavailable``, ``rejected``, ``misconfigured``).
    """
    METRICS.backend_errors.labels(issuer=issuer, kind=kind).inc()


def session_opened(transport: str) -> None:
    """One more live session on ``transport`` (``udp``, ``dtls``, ``tcp``...)."""
    _child(METRICS.live_sessions, transport).inc()


def session_closed(transport: str) -> None:
    """One live session on ``transport`` fewer."""
    _child(METRICS.live_sessions, transport).dec()


def set_live_sessions(transport: str, count: int) -> None:
    """Set the number of live sessions on ``transport`` (for transports that count for themselves)."""
    METRICS.live_sessions.labels(transport=transport).set(count)


def observe_bootstrap_session(outcome: str) -> None:
    """Count one finished bootstrap session (``success``, ``timeout``, ``rejected``, ``error``)."""
    _child(METRICS.bootstrap_sessions, outcome).inc()
