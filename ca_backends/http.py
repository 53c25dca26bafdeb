"""HTTP plumbing shared by the remote CA backends (CFSSL, GlobalSign).

One :class:`HttpClient` per backend instance (that is, per issuer) owns:

* one keep-alive :class:`aiohttp.ClientSession`, created lazily inside the running loop and closed
  by :meth:`HttpClient.aclose`;
* a bulkhead: at most ``max_concurrency`` calls in flight; a caller that cannot get a slot within
  ``slot_wait`` gets :class:`BackendUnavailable` at once instead of queueing behind a slow CA;
* a :class:`CircuitBreaker`: after ``breaker_threshold`` consecutive unavailability failures
  (connection errors, timeouts, 429, 5xx) calls fail fast for ``breaker_cooldown`` seconds, then a
  single half-open probe decides whether to close it again;
* retries with jittered exponential back-off, only where repeating the call cannot issue a second
  certificate: idempotent calls on connection errors, timeouts and the ``retry_statuses`` answers,
  and any call whose connection was never established (nothing was sent).

Times come from an injectable :class:`Clock` so the breaker and back-off are testable without
sleeping; the slot wait and per-call timeouts use the event loop's own clock.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import structlog
from yarl import URL

from .errors import BackendMisconfigured, BackendUnavailable

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "CircuitBreaker",
    "Clock",
    "HttpClient",
    "HttpPolicy",
    "HttpResponse",
    "SystemClock",
    "redact_url",
]

#: Answers that mean "not now": retried for idempotent calls, counted by the circuit breaker.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({429, 503})
#: Bodies larger than this are refused (a certificate answer is a few kilobytes).
MAX_BODY_BYTES = 1 << 20


class Clock(Protocol):
    """Monotonic time and sleeping, injectable for tests."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary fixed point; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(seconds)


@dataclass(frozen=True, kw_only=True)
class HttpPolicy:
    """Timeouts, concurrency, retry and circuit-breaker settings for one issuer."""

    connect_timeout: float = 3.0
    """Seconds to establish a TCP (and TLS) connection."""
    request_timeout: float = 15.0
    """Seconds for one attempt, from asking for a connection to the last body byte."""
    max_concurrency: int = 16
    """Calls in flight to this issuer at once."""
    slot_wait: float = 0.5
    """Seconds a caller waits for a free slot before failing with :class:`BackendUnavailable`."""
    busy_retry_after: float = 1.0
    """``retry_after`` given when no slot was free or a half-open probe is already running."""
    max_attempts: int = 3
    """Attempts per retryable call, the first included."""
    backoff_base: float = 0.2
    """First back-off delay in seconds; doubles per attempt, then jittered down by up to half."""
    backoff_max: float = 5.0
    """Upper bound of one back-off delay (also caps how long a ``Retry-After`` is honoured inline)."""
    default_retry_after: float = 5.0
    """``retry_after`` when the CA is unavailable and gave no ``Retry-After``."""
    breaker_threshold: int = 5
    """Consecutive unavailability failures that open the circuit."""
    breaker_cooldown: float = 30.0
    """Seconds the circuit stays open before a half-open probe is let through."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.max_attempts < 1 or self.breaker_threshold < 1:
            raise ValueError("max_concurrency, max_attempts and breaker_threshold must be >= 1")


@dataclass(frozen=True)
class HttpResponse:
    """A fully read HTTP answer (the connection is already back in the pool)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``""`` if absent)."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body decoded as JSON, or ``None`` if it is not valid JSON (whatever the content type)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds (delta-seconds or HTTP-date), if the server sent one."""
        return parse_retry_after(self.headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header value into seconds from now (never negative)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact_url(url: str | URL) -> str:
    """``scheme://host:port/path`` without user info, query or fragment, safe to log."""
    u = URL(url) if isinstance(url, str) else url
    return str(u.with_user(None).with_query(None).with_fragment(None))


BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open probe.

    ``closed``: calls pass; each unavailability failure increments a counter, any other outcome
    resets it. At ``threshold`` the circuit opens: calls fail fast with ``retry_after`` = the
    remaining cool-down. When the cool-down has passed, one call is let through as a probe (others
    keep failing fast); its success closes the circuit, its failure opens it for another cool-down.
    """

    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        clock: Clock,
        probe_retry_after: float = 1.0,
        log: Any = None,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._probe_retry_after = probe_retry_after
        self._log = log if log is not None else structlog.get_logger(__name__)
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state, as seen now."""
        if self._opened_at is None:
            return "closed"
        if self._probe_in_flight or self._clock.monotonic() - self._opened_at >= self._cooldown:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        """Unavailability failures since the last other outcome."""
        return self._failures

    def remaining(self) -> float:
        """Seconds until the circuit lets a probe through (0 when closed or probing)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock.monotonic())

    def before_call(self) -> bool:
        """Admit a call or raise :class:`BackendUnavailable`; returns True if the call is the probe."""
        if self._opened_at is None:
            return False
        remaining = self.remaining()
        if remaining > 0:
            raise BackendUnavailable(
                f"circuit open after {self._failures} consecutive failures; retry in {remaining:.1f}s",
                retry_after=remaining,
            )
        if self._probe_in_flight:
            raise BackendUnavailable(
                "circuit half-open: a probe call is in progress", retry_after=self._probe_retry_after
            )
        self._probe_in_flight = True
        self._log.info("ca_circuit_half_open")
        return True

    def record_success(self, probe: bool) -> None:
        """The CA answered (with anything but an unavailability status)."""
        if probe:
            self._probe_in_flight = False
        if self._opened_at is not None and (probe or not self._probe_in_flight):
            self._log.info("ca_circuit_closed")
            self._opened_at = None
        self._failures = 0

    def record_failure(self, probe: bool) -> None:
        """The CA was unreachable, timed out, or answered 429/5xx."""
        if probe:
            self._probe_in_flight = False
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self._threshold):
            self._opened_at = self._clock.monotonic()
            self._log.warning(
                "ca_circuit_opened", consecutive_failures=self._failures, cooldown=self._cooldown
            )

    def abandon(self, probe: bool) -> None:
        """The call ended without telling anything about the CA (cancelled, local error)."""
        if probe:
            self._probe_in_flight = False


class _TransportFailure(Exception):
    """Internal: one attempt failed below HTTP. ``sent`` is False only if nothing reached the server."""

    def __init__(self, description: str, *, sent: bool) -> None:
        super().__init__(description)
        self.description = description
        self.sent = sent


def _is_tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError) and not isinstance(cur, ssl.SSLZeroReturnError | ssl.SSLEOFError):
            return cur
        if isinstance(cur, aiohttp.ClientSSLError):
            inner = cur.os_error if isinstance(cur.os_error, ssl.SSLError) else None
            return inner or ssl.SSLError(str(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class HttpClient:
    """Resilient JSON-over-HTTP client for one issuer (see the module docstring)."""

    def __init__(
        self,
        *,
        issuer: str,
        policy: HttpPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        user_agent: str = "lwm2m-bootstrap-ca-backend",
    ) -> None:
        self.policy = policy or HttpPolicy()
        self.clock: Clock = clock or SystemClock()
        self._ssl = ssl_context
        self._rng = rng or random.Random()  # jitter only, not security relevant
        self._user_agent = user_agent
        self._log = structlog.get_logger(__name__).bind(issuer=issuer)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._slots = asyncio.Semaphore(self.policy.max_concurrency)
        self.breaker = CircuitBreaker(
            threshold=self.policy.breaker_threshold,
            cooldown=self.policy.breaker_cooldown,
            clock=self.clock,
            probe_retry_after=self.policy.busy_retry_after,
            log=self._log,
        )

    # -- session -------------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise BackendUnavailable(
                "the CA backend has been closed", retry_after=self.policy.busy_retry_after
            )
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else True,
                limit=self.policy.max_concurrency,
                keepalive_timeout=15.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.policy.request_timeout, sock_connect=self.policy.connect_timeout
                ),
                headers={"User-Agent": self._user_agent},
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session; later calls fail with :class:`BackendUnavailable`."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- calls ---------------------------------------------------------------------------------

    def backoff_delay(self, attempt: int) -> float:
        """Jittered exponential delay before retry number ``attempt`` (1-based)."""
        ceiling = min(self.policy.backoff_max, self.policy.backoff_base * (2.0 ** (attempt - 1)))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def unavailable_retry_after(self, response: HttpResponse | None = None) -> float:
        """What to put in ``BackendUnavailable.retry_after`` after giving up."""
        hinted = response.retry_after if response is not None else None
        candidates = [self.breaker.remaining()]
        candidates.append(hinted if hinted is not None else self.policy.default_retry_after)
        return max(candidates)

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        retry_statuses: frozenset[int] | None = None,
    ) -> HttpResponse:
        """Send one logical request, retrying where that is safe; return the final answer.

        ``retry_statuses`` defaults to 429/503 for idempotent calls and to nothing otherwise; pass
        it explicitly for a non-idempotent call whose API guarantees those answers mean "not done".
        Connection failures before anything was sent are retried for every call; failures after
        that (timeouts, resets) only for idempotent ones. Raises :class:`BackendUnavailable` once
        the attempts are used up, the circuit is open or no slot is free, and
        :class:`BackendMisconfigured` on TLS failures (certificate or handshake), which waiting
        does not fix.
        """
        statuses = (
            retry_statuses
            if retry_statuses is not None
            else (DEFAULT_RETRY_STATUSES if idempotent else frozenset())
        )
        target = URL(url) if isinstance(url, str) else url
        safe_url = redact_url(target)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._attempt(method, target, body, headers)
            except _TransportFailure as exc:
                can_retry = (idempotent or not exc.sent) and attempt < self.policy.max_attempts
                if can_retry and self.breaker.state == "closed":
                    delay = self.backoff_delay(attempt)
                    self._log.warning(
                        "ca_request_retry",
                        method=method,
                        url=safe_url,
                        attempt=attempt,
                        error=exc.description,
                        delay=round(delay, 3),
                    )
                    await self.clock.sleep(delay)
                    continue
                self._log.warning(
                    "ca_request_failed", method=method, url=safe_url, attempt=attempt, error=exc.description
                )
                raise BackendUnavailable(
                    f"{method} {safe_url}: {exc.description}", retry_after=self.unavailable_retry_after()
                ) from None
            if response.status in statuses and attempt < self.policy.max_attempts:
                hinted = response.retry_after
                if self.breaker.state == "closed" and (hinted is None or hinted <= self.policy.backoff_max):
                    delay = max(self.backoff_delay(attempt), hinted or 0.0)
                    self._log.warning(
                        "ca_request_retry",
                        method=method,
                        url=safe_url,
                        attempt=attempt,
                        status=response.status,
                        delay=round(delay, 3),
                    )
                    await self.clock.sleep(delay)
                    continue
            return response

    async def _acquire_slot(self) -> None:
        try:
            async with asyncio.timeout(self.policy.slot_wait):
                await self._slots.acquire()
        except TimeoutError:
            self._log.warning("ca_concurrency_limit", limit=self.policy.max_concurrency)
            raise BackendUnavailable(
                f"too many concurrent requests to this CA (limit {self.policy.max_concurrency})",
                retry_after=self.policy.busy_retry_after,
            ) from None

    async def _attempt(
        self, method: str, url: URL, body: bytes | None, headers: Mapping[str, str] | None
    ) -> HttpResponse:
        session = self._get_session()
        probe = self.breaker.before_call()
        outcome_recorded = False
        try:
            await self._acquire_slot()
            try:
                response = await self._send(session, method, url, body, headers)
            finally:
                self._slots.release()
            if response.status == 429 or response.status >= 500:
                self.breaker.record_failure(probe)
            else:
                self.breaker.record_success(probe)
            outcome_recorded = True
            return response
        except _TransportFailure:
            self.breaker.record_failure(probe)
            outcome_recorded = True
            raise
        finally:
            if not outcome_recorded:
                self.breaker.abandon(probe)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> HttpResponse:
        try:
            async with session.request(
                method, url, data=body, headers=dict(headers or {}), allow_redirects=False
            ) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _TransportFailure(f"answer larger than {MAX_BODY_BYTES} bytes", sent=True)
                    chunks.append(chunk)
                return HttpResponse(resp.status, resp.headers, b"".join(chunks))
        except _TransportFailure:
            raise
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise self._tls_error(url, exc) from None
        except aiohttp.ConnectionTimeoutError:
            raise _TransportFailure("connect timeout", sent=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise _TransportFailure(
                f"cannot connect: {exc.os_error.strerror or exc.os_error}", sent=False
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            tls = _is_tls_failure(exc)
            if tls is not None:
                raise self._tls_error(url, tls) from None
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise _TransportFailure(kind if kind == "timeout" else f"{kind}: {exc}", sent=True) from None

    def _tls_error(self, url: URL, exc: BaseException) -> BackendMisconfigured:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        self._log.error("ca_tls_failed", host=url.host, reason=str(reason))
        return BackendMisconfigured(f"TLS with {url.host}:{url.port} failed ({reason}); check certificates")
