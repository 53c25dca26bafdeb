"""The server-driven LwM2M bootstrap sequence as a sans-I/O state machine.

After a Bootstrap-Request (``POST /bs``) the bootstrap server drives the client with requests of
its own (Transport TS, "Bootstrap Interface"). :class:`BootstrapSession` decides what to send
and what the answers mean; the adapter owns sockets, CoAP and clocks, in the style of aioquic's
``QuicConnection`` and h11's ``Connection``::

    session = BootstrapSession(endpoint=ep, lwm2m_version=request_version(pct), preferred_format=pct,
                               config=config, credentials=credentials, now=loop.time())
    while (op := session.next_operation(now=loop.time())) is not None:
        response = await send(op)               # or: no answer before session.get_timer()
        session.handle_response(op.op_id, response.code, response.payload,
                                response.content_format, loop.time())
    # session.outcome is "success" or "failed" (session.reason says why)

It also builds Bootstrap-Pack payloads (:func:`build_pack`, ``GET /bspack``, LwM2M 1.2).
Nothing here does I/O, reads a clock or draws random numbers.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import cbor2

from ..bootstrap_plan import BootstrapConfig, DeviceCredentials, choose_instance_ids, plan_objects
from ..errors import BadRequest, NotAcceptable
from .codec import choose_format, decode, encode
from .links import DiscoverResult, bootstrap_account_instance, parse_discover
from .model import CodecError, ContentFormat, DecodedInstances, Instances, ObjectId, Path

__all__ = [
    "PACK_FORMATS",
    "BootstrapSession",
    "Event",
    "Exchange",
    "Operation",
    "OperationKind",
    "SessionError",
    "State",
    "build_pack",
    "request_version",
]

#: Content-Formats a Bootstrap-Pack can be sent in (Transport TS, Bootstrap-Pack-Request).
PACK_FORMATS: Final = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_CBOR)

_CODE_RE: Final = re.compile(r"[2-5]\.[0-9]{2}")
_VERSION_RE: Final = re.compile(r"\s*\"?(\d+)\.(\d+)")
#: Short meanings of the response codes a client may send (RFC 7252 §12.1.2).
_MEANINGS: Final = {
    "4.00": "bad request",
    "4.01": "unauthorized",
    "4.03": "forbidden",
    "4.04": "not found",
    "4.05": "method not allowed",
    "4.06": "not acceptable",
    "4.13": "request entity too large",
    "4.15": "unsupported content format",
    "5.00": "internal server error",
    "5.01": "not implemented",
    "5.03": "service unavailable",
}


class SessionError(Exception):
    """The adapter misused the session (unknown operation id, malformed response code)."""


def request_version(pct: int | None) -> str:
    """The LwM2M version a Bootstrap-Request implies: ``pct`` arrived with 1.1.

    Args:
        pct: The ``pct`` query parameter of ``POST /bs``, if present.

    Returns:
        ``"1.0"`` without ``pct``, else ``"1.1"`` (Discover may later say more).
    """
    return "1.0" if pct is None else "1.1"


def _version_tuple(version: str | None) -> tuple[int, int] | None:
    match = _VERSION_RE.match(version or "")
    return None if match is None else (int(match[1]), int(match[2]))


class OperationKind(enum.StrEnum):
    """Bootstrap operations the server sends (Transport TS, Bootstrap Interface table)."""

    DISCOVER = "Discover"
    READ = "Read"
    DELETE = "Delete"
    WRITE = "Write"
    FINISH = "Finish"


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One server-to-client request the adapter must send."""

    op_id: int
    """Identifies the operation in :meth:`BootstrapSession.handle_response`."""
    kind: OperationKind
    """Which bootstrap operation this is."""
    method: Literal["GET", "DELETE", "PUT", "POST"]
    """CoAP method."""
    path: str
    """Uri-Path as an LwM2M path, e.g. ``"/0/1"``; ``"/bs"`` for Finish."""
    payload: bytes = b""
    """Request payload (Write only)."""
    content_format: int | None = None
    """Content-Format option of the request (Write only)."""
    accept: int | None = None
    """Accept option (Discover and Read)."""

    def __str__(self) -> str:
        return "Finish" if self.kind is OperationKind.FINISH else f"{self.kind.value} {self.path}"


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """An operation and how it ended, for logs and the audit trail."""

    operation: Operation
    """What was sent."""
    code: str | None
    """The response code, or None when no answer came in time."""


class State(enum.Enum):
    """Phases of a bootstrap session; the active phase names the operation being sent."""

    DISCOVERING = "discovering"
    READING = "reading"
    DELETING = "deleting"
    WRITING = "writing"
    FINISHING = "finishing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Event(enum.Enum):
    """What moves a session between states."""

    ANSWERED = "answered"  # an operation succeeded and more of the same phase remain
    PHASE_DONE = "phase done"  # the phase's last operation succeeded (or it had none)
    UNSUPPORTED = "unsupported"  # the client does not implement Bootstrap-Discover
    REJECTED = "rejected"  # an error answer, or a plan the client cannot take
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"  # superseded by a new Bootstrap-Request


# Theory of operation
# -------------------
# Rule 1: one operation is in flight at a time. The operations depend on each other (Writes
#   must land after the Deletes, Finish after the Writes) and CoAP does not order concurrent
#   requests, so the next request goes out only after the previous one was answered.
# Rule 2: phases run in a fixed order: Discover "/" to learn the client's version and
#   instances (Leshan's autoIdForSecurityObject), an optional Bootstrap-Read of /2 (LwM2M 1.1+,
#   "Object ID MUST be '2'"; Wakaama's BS reads after Discover), then Deletes, the Security
#   then the Server Write, and Bootstrap-Finish (Leshan's BootstrapUtil.toRequests order).
# Rule 3: the Bootstrap-Server account is the /0 instance listed without "ssid" in Discover
#   (OMA_LwM2M_for_Developers#522); it is never deleted nor written. A client that answers
#   Discover with 4.00/4.04/4.05 gets Delete "/" instead, which by the Transport TS removes
#   everything "except LwM2M Bootstrap-Server Account"; its instance is then unknown, so the
#   Writes avoid an assumed one (fallback_bootstrap_iid, default 0).
# Rule 4: 4.04 to a Delete is success (Wakaama answers it for a missing instance, Anjay 2.02);
#   so is 4.04 to the optional Read (no /2 object). Any other 4.xx/5.xx fails the session,
#   as does Finish answering 4.06 "Inconsistent loaded configuration" (Core TS, Response Codes).
# Rule 5: the session fails on a per-operation timeout (default 30 s), a whole-session
#   timeout (default 120 s, Leshan's request timeout), or cancel() when the same endpoint
#   sends a new Bootstrap-Request (Leshan's DefaultBootstrapHandler cancels the old session).
# Rule 6: a phase with nothing to send ends at once (PHASE_DONE), so a client with no
#   instances goes straight from Discover to the Writes.
_ACTIVE: Final = (State.DISCOVERING, State.READING, State.DELETING, State.WRITING, State.FINISHING)

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (State.DISCOVERING, Event.PHASE_DONE): State.READING,
    (State.DISCOVERING, Event.UNSUPPORTED): State.DELETING,
    (State.READING, Event.PHASE_DONE): State.DELETING,
    (State.DELETING, Event.ANSWERED): State.DELETING,
    (State.DELETING, Event.PHASE_DONE): State.WRITING,
    (State.WRITING, Event.ANSWERED): State.WRITING,
    (State.WRITING, Event.PHASE_DONE): State.FINISHING,
    (State.FINISHING, Event.PHASE_DONE): State.SUCCEEDED,
    **{
        (state, event): State.FAILED
        for state in _ACTIVE
        for event in (Event.REJECTED, Event.TIMED_OUT, Event.CANCELLED)
    },
}


class BootstrapSession:
    """Drives one client through Discover, Delete, Write and Finish.

    Args:
        endpoint: Endpoint Client Name (for reasons and logs).
        lwm2m_version: The client's version as far as the adapter knows (see
            :func:`request_version`); a version in the Discover answer overrides it.
        preferred_format: The ``pct`` of the Bootstrap-Request, if any.
        config: The server account to provision.
        credentials: Per-device material for ``certificate``/``psk`` modes, else None.
        now: The current time in seconds (any monotonic clock).
        operation_timeout: Seconds to wait for each answer.
        session_timeout: Seconds the whole session may take.
        read_access_control: Send a Bootstrap-Read of /2 to 1.1+ clients.
        fallback_bootstrap_iid: The /0 instance assumed to hold the Bootstrap-Server account when
            the client does not answer Discover (it cannot be learnt then; clients commonly use 0).

    Raises:
        BadRequest: If the configuration or the credentials are invalid (answer the
            Bootstrap-Request with 4.00 then).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        lwm2m_version: str | None,
        preferred_format: int | None,
        config: BootstrapConfig,
        credentials: DeviceCredentials | None,
        now: float,
        operation_timeout: float = 30.0,
        session_timeout: float = 120.0,
        read_access_control: bool = False,
        fallback_bootstrap_iid: int = 0,
    ) -> None:
        if credentials is None:
            _validate_shared(config)
        else:
            plan_objects(config, credentials, security_iid=1, server_iid=1)  # validates both
        self.endpoint = endpoint
        self._requested_version = lwm2m_version
        self._pct = preferred_format
        self._config = config
        self._credentials = credentials
        self._operation_timeout = operation_timeout
        self._session_timeout = session_timeout
        self._read_access_control = read_access_control
        self._fallback_bootstrap_iid = fallback_bootstrap_iid
        self._deadline = now + session_timeout
        self._now = now
        self._state = State.DISCOVERING
        self._reason: str | None = None
        self._next_id = 1
        self._queue: list[Operation] = []
        self._in_flight: Operation | None = None
        self._op_deadline: float | None = None
        self._history: list[Exchange] = []
        self._discovered: DiscoverResult | None = None
        self._spared: frozenset[int] = frozenset()
        self._written: dict[int, Instances] | None = None
        self._access_control: DecodedInstances | None = None
        # Dispatch tables (aioquic style): what entering a state queues, how answers are judged.
        self._on_enter: dict[State, Callable[[], None]] = {
            State.READING: self._enter_reading,
            State.DELETING: self._enter_deleting,
            State.WRITING: self._enter_writing,
            State.FINISHING: self._enter_finishing,
        }
        self._judges: dict[OperationKind, Callable[[Operation, str, bytes, int | None], None]] = {
            OperationKind.DISCOVER: self._judge_discover,
            OperationKind.READ: self._judge_read,
            OperationKind.DELETE: self._judge_delete,
            OperationKind.WRITE: self._judge_plain,
            OperationKind.FINISH: self._judge_plain,
        }
        # Bootstrap-Discover on "/" (Accept link-format) comes first.
        self._queue.append(
            self._operation(OperationKind.DISCOVER, "GET", "/", accept=ContentFormat.LINK_FORMAT)
        )

    # -- inputs ---------------------------------------------------------------------------------

    def next_operation(self, now: float | None = None) -> Operation | None:
        """The next request to send, or None while one is in flight or the session is over.

        Args:
            now: When the adapter sends it (starts the operation timeout); defaults to the time
                of the last input.

        Returns:
            The operation; it stays in flight until :meth:`handle_response` or a timeout.
        """
        if now is not None:
            self._now = now
        if self._in_flight is not None or self._state not in _ACTIVE or not self._queue:
            return None
        self._in_flight = self._queue.pop(0)
        self._op_deadline = self._now + self._operation_timeout
        return self._in_flight

    def handle_response(
        self, op_id: int, code: str, payload: bytes, content_format: int | None, now: float
    ) -> None:
        """Take the client's answer to the operation in flight.

        Answers that arrive after the session ended (a late reply after a timeout or cancel)
        are ignored.

        Args:
            op_id: :attr:`Operation.op_id` of the answered operation.
            code: The response code in dotted form, e.g. ``"2.04"``.
            payload: The response payload.
            content_format: The response's Content-Format option, if any.
            now: The current time.

        Raises:
            SessionError: If ``op_id`` is not the operation in flight or ``code`` is malformed.
        """
        self._now = now
        if self._state not in _ACTIVE:
            return
        operation = self._in_flight
        if operation is None or operation.op_id != op_id:
            raise SessionError(f"operation {op_id} is not in flight")
        if not _CODE_RE.fullmatch(code):
            raise SessionError(f"malformed response code {code!r}")
        self._in_flight = None
        self._op_deadline = None
        self._history.append(Exchange(operation=operation, code=code))
        self._judges[operation.kind](operation, code, bytes(payload), content_format)
        self._advance()

    def handle_timer(self, now: float) -> None:
        """Fail the session if the operation or the session has run out of time.

        Args:
            now: The current time.
        """
        self._now = now
        if self._state not in _ACTIVE:
            return
        if now >= self._deadline:
            waiting = f" (waiting for {self._in_flight})" if self._in_flight else ""
            self._time_out(f"bootstrap not finished within {self._session_timeout:g} s{waiting}")
        elif self._in_flight is not None and self._op_deadline is not None and now >= self._op_deadline:
            self._time_out(f"no answer to {self._in_flight} within {self._operation_timeout:g} s")

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None once the session is over."""
        if self._state not in _ACTIVE:
            return None
        if self._op_deadline is None:
            return self._deadline
        return min(self._deadline, self._op_deadline)

    def cancel(self, reason: str = "superseded by a new Bootstrap-Request") -> None:
        """Fail the session now, e.g. when the endpoint sends a new Bootstrap-Request.

        Does nothing once the session is over.

        Args:
            reason: Recorded as :attr:`reason`.
        """
        if self._state in _ACTIVE:
            self._fire(Event.CANCELLED, reason)

    # -- results --------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def outcome(self) -> Literal["success", "failed"] | None:
        """``"success"`` after Finish was accepted, ``"failed"`` after a failure, else None."""
        if self._state is State.SUCCEEDED:
            return "success"
        return "failed" if self._state is State.FAILED else None

    @property
    def reason(self) -> str | None:
        """Why the session failed, naming the operation and the answer."""
        return self._reason

    @property
    def lwm2m_version(self) -> str | None:
        """The client's version: from Discover if it said, else what the adapter passed."""
        if self._discovered is not None and self._discovered.lwm2m_version:
            return self._discovered.lwm2m_version
        return self._requested_version

    @property
    def content_format(self) -> ContentFormat:
        """The format Bootstrap-Writes use (``pct`` if we can produce it; TLV for 1.0)."""
        return choose_format(self._pct, self.lwm2m_version)

    @property
    def discovered(self) -> DiscoverResult | None:
        """The parsed Discover answer, None before it or when Discover is unsupported."""
        return self._discovered

    @property
    def bootstrap_account_iid(self) -> int | None:
        """The /0 instance of the Bootstrap-Server account, when Discover showed it."""
        return None if self._discovered is None else bootstrap_account_instance(self._discovered.links)

    @property
    def written(self) -> dict[int, Instances] | None:
        """The /0 and /1 instances sent in the Writes, once planned."""
        return self._written

    @property
    def access_control(self) -> DecodedInstances | None:
        """What the Bootstrap-Read of /2 returned, if it was sent and decoded."""
        return self._access_control

    @property
    def history(self) -> tuple[Exchange, ...]:
        """Every answered or timed-out operation, in order."""
        return tuple(self._history)

    # -- state machine --------------------------------------------------------------------------

    def _fire(self, event: Event, reason: str | None = None) -> None:
        key = (self._state, event)
        if key not in TRANSITIONS:
            raise SessionError(f"no transition from {self._state.value} on {event.value}")
        previous, self._state = self._state, TRANSITIONS[key]
        if self._state is State.FAILED:
            self._reason = reason
            self._queue.clear()
            self._in_flight = None
            self._op_deadline = None
        elif self._state is not previous and self._state in self._on_enter:
            self._on_enter[self._state]()

    def _advance(self) -> None:
        # Rule 6: phases with nothing (left) to send end immediately.
        while self._state in _ACTIVE and self._in_flight is None and not self._queue:
            self._fire(Event.PHASE_DONE)

    def _time_out(self, reason: str) -> None:
        if self._in_flight is not None:
            self._history.append(Exchange(operation=self._in_flight, code=None))
        self._fire(Event.TIMED_OUT, reason)

    def _operation(
        self,
        kind: OperationKind,
        method: Literal["GET", "DELETE", "PUT", "POST"],
        path: str,
        *,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
    ) -> Operation:
        op_id, self._next_id = self._next_id, self._next_id + 1
        return Operation(
            op_id=op_id,
            kind=kind,
            method=method,
            path=path,
            payload=payload,
            content_format=None if content_format is None else int(content_format),
            accept=None if accept is None else int(accept),
        )

    def _enter_reading(self) -> None:
        version = _version_tuple(self.lwm2m_version)
        if self._read_access_control and version is not None and version >= (1, 1):
            self._queue.append(self._operation(OperationKind.READ, "GET", "/2", accept=self.content_format))

    def _enter_deleting(self) -> None:
        if self._discovered is None:
            self._queue.append(self._operation(OperationKind.DELETE, "DELETE", "/"))
            return
        for link in self._discovered.links:
            path = link.path
            if path.instance_id is None or path.resource_id is not None:
                continue
            if path.object_id == ObjectId.SECURITY and path.instance_id in self._spared:
                continue  # Rule 3: never the Bootstrap-Server account
            # /21 too, as Leshan does: an OSCORE context left behind would keep its secret on the
            # device. Our own Bootstrap-Server account is never an OSCORE one (it is this session).
            if path.object_id in (ObjectId.SECURITY, ObjectId.SERVER, ObjectId.OSCORE):
                self._queue.append(self._operation(OperationKind.DELETE, "DELETE", str(path)))

    def _enter_writing(self) -> None:
        security_iid, server_iid = choose_instance_ids(self._spared)
        fmt = self.content_format
        try:
            if self._credentials is None:  # nothing per device: devices sharing a configuration share these
                objects, writes = _shared_writes(
                    self._config, security_iid, server_iid, self.lwm2m_version, fmt
                )
            else:
                objects, writes = _writes(
                    self._config, self._credentials, security_iid, server_iid, self.lwm2m_version, fmt
                )
        except BadRequest as exc:  # includes CodecError
            self._fire(Event.REJECTED, f"cannot provision {self.endpoint}: {exc.message}")
            return
        self._written = dict(objects)
        for path, payload in writes:
            self._queue.append(
                self._operation(OperationKind.WRITE, "PUT", str(path), payload=payload, content_format=fmt)
            )

    def _enter_finishing(self) -> None:
        self._queue.append(self._operation(OperationKind.FINISH, "POST", "/bs"))

    # -- judging answers ------------------------------------------------------------------------

    def _succeeded(self) -> None:
        self._fire(Event.ANSWERED if self._queue else Event.PHASE_DONE)

    def _reject(self, operation: Operation, code: str) -> None:
        meaning = _MEANINGS.get(code)
        if operation.kind is OperationKind.FINISH and code == "4.06":
            meaning = "inconsistent configuration"  # Core TS, Response Codes: Bootstrap Interface
        suffix = f" ({meaning})" if meaning else ""
        self._fire(Event.REJECTED, f"{operation} answered {code}{suffix}")

    def _judge_plain(self, operation: Operation, code: str, payload: bytes, fmt: int | None) -> None:
        if code.startswith("2."):
            self._succeeded()
        else:
            self._reject(operation, code)

    def _judge_delete(self, operation: Operation, code: str, payload: bytes, fmt: int | None) -> None:
        if code.startswith("2.") or code == "4.04":  # Rule 4
            self._succeeded()
        else:
            self._reject(operation, code)

    def _judge_discover(self, operation: Operation, code: str, payload: bytes, fmt: int | None) -> None:
        if code in ("4.00", "4.04", "4.05"):
            # Rule 3: fall back to Delete "/"; the Writes must still miss the account's instance.
            self._spared = frozenset({self._fallback_bootstrap_iid})
            self._fire(Event.UNSUPPORTED)
            return
        if not code.startswith("2."):
            self._reject(operation, code)
            return
        if fmt not in (None, ContentFormat.LINK_FORMAT):
            self._fire(Event.REJECTED, f"{operation} answered Content-Format {fmt}, expected 40")
            return
        try:
            self._discovered = parse_discover(payload)
        except CodecError as exc:
            self._fire(Event.REJECTED, f"{operation} answer is not valid link format: {exc.message}")
            return
        # Rule 3, made safe: spare every /0 instance without ssid, the first being the account.
        self._spared = frozenset(
            link.path.instance_id
            for link in self._discovered.links
            if link.path.object_id == ObjectId.SECURITY
            and link.path.instance_id is not None
            and link.path.resource_id is None
            and "ssid" not in link.attributes
        )
        self._succeeded()

    def _judge_read(self, operation: Operation, code: str, payload: bytes, fmt: int | None) -> None:
        if code == "4.04":  # Rule 4: no Access Control object
            self._succeeded()
            return
        if not code.startswith("2."):
            self._reject(operation, code)
            return
        try:
            self._access_control = decode(ContentFormat.TLV if fmt is None else fmt, payload, "/2")
        except CodecError:
            self._access_control = None  # informational only: an unreadable answer does not fail
        self._succeeded()


def _writes(
    config: BootstrapConfig,
    credentials: DeviceCredentials | None,
    security_iid: int,
    server_iid: int,
    lwm2m_version: str | None,
    fmt: int,
) -> tuple[Mapping[int, Instances], tuple[tuple[Path, bytes], ...]]:
    """The planned /0 and /1 (and /21) instances and one encoded Write per instance."""
    objects = plan_objects(
        config, credentials, security_iid=security_iid, server_iid=server_iid, lwm2m_version=lwm2m_version
    )
    writes = tuple(
        (Path(object_id, iid), encode(fmt, Path(object_id, iid), {iid: instance}))
        for object_id, instances in sorted(objects.items())
        for iid, instance in sorted(instances.items())
    )
    return objects, writes


@functools.lru_cache(maxsize=256)
def _validate_shared(config: BootstrapConfig) -> None:
    """Validate a configuration without per-device material once, not per device (the frozen
    configuration is the key; an invalid one raises every time, since exceptions are not cached)."""
    plan_objects(config, None, security_iid=1, server_iid=1)


@functools.lru_cache(maxsize=256)
def _shared_writes(
    config: BootstrapConfig, security_iid: int, server_iid: int, lwm2m_version: str | None, fmt: int
) -> tuple[Mapping[int, Instances], tuple[tuple[Path, bytes], ...]]:
    """:func:`_writes` for modes without per-device material (``est``, ``nosec``), encoded once per
    configuration: validating and encoding the same account for every device was a third of
    the server's CPU per bootstrap. The configuration is a frozen value, so a changed one is a
    different key."""
    return _writes(config, None, security_iid, server_iid, lwm2m_version, fmt)


def build_pack(
    config: BootstrapConfig,
    credentials: DeviceCredentials | None,
    fmt: int | None,
    *,
    security_iid: int = 1,
    server_iid: int = 1,
) -> bytes:
    """The whole configuration as one Bootstrap-Pack payload (``GET /bspack``, LwM2M 1.2).

    The client deletes the instances of the objects in the pack, sparing its Bootstrap-Server
    account, then applies the pack; no Finish follows (Transport TS, Bootstrap-Pack-Request).
    The server cannot learn the account's /0 instance here (OMA_LwM2M_for_Developers#547), so
    the Security instance goes to ``security_iid`` (1 by default; clients commonly keep the
    account at /0/0).

    Args:
        config: The server account to provision.
        credentials: Per-device material for ``certificate``/``psk`` modes, else None.
        fmt: The request's Accept option: 112 (also when absent), 110 or 11544.
        security_iid: Security instance ID to write.
        server_iid: Server instance ID to write.

    Returns:
        The payload in ``fmt``.

    Raises:
        NotAcceptable: For any other Accept value.
        BadRequest: If the configuration or the credentials are invalid.
    """
    content_format = ContentFormat.SENML_CBOR if fmt is None else _pack_format(fmt)
    if credentials is None:
        return _shared_pack(config, content_format, security_iid, server_iid)
    return _pack(config, credentials, content_format, security_iid, server_iid)


@functools.lru_cache(maxsize=256)
def _shared_pack(
    config: BootstrapConfig, content_format: ContentFormat, security_iid: int, server_iid: int
) -> bytes:
    """A pack without per-device material, encoded once per configuration (see _shared_writes)."""
    return _pack(config, None, content_format, security_iid, server_iid)


def _pack(
    config: BootstrapConfig,
    credentials: DeviceCredentials | None,
    content_format: ContentFormat,
    security_iid: int,
    server_iid: int,
) -> bytes:
    objects = plan_objects(
        config, credentials, security_iid=security_iid, server_iid=server_iid, lwm2m_version="1.2"
    )
    parts = [
        encode(content_format, Path(object_id), instances) for object_id, instances in sorted(objects.items())
    ]
    # The codecs write one object per payload; a pack joins them. SenML names stay absolute
    # because each part starts with its own base name ("/0/", "/1/"); LwM2M CBOR maps are
    # keyed from the root, so their top levels merge.
    if content_format is ContentFormat.SENML_JSON:
        records: list[Any] = [record for part in parts for record in json.loads(part)]
        return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if content_format is ContentFormat.SENML_CBOR:
        return cbor2.dumps([record for part in parts for record in cbor2.loads(part)])
    merged: dict[int, Any] = {}
    for part in parts:
        merged.update(cbor2.loads(part))
    return cbor2.dumps(merged)


def _pack_format(accept: int) -> ContentFormat:
    for candidate in PACK_FORMATS:
        if accept == candidate:
            return candidate
    offered = ", ".join(str(int(f)) for f in PACK_FORMATS)
    raise NotAcceptable(f"cannot send a Bootstrap-Pack as Content-Format {accept}; offered: {offered}")
