"""CoRE Link Format (RFC 6690) for Bootstrap-Discover responses (Content-Format 40).

A Bootstrap-Discover answer (Core TS, Bootstrap-Discover operation) lists object instances with
attributes, and may carry the client's LwM2M version either on a root link or, as the LwM2M 1.1
examples write it, as a bare attribute ahead of the first link::

    </>;lwm2m=1.0,</0/0>,</0/1>;ssid=1
    lwm2m="1.1",</0/0>;ssid=101,</0/1>,</1/0>;ssid=101,</3/0>

Parsing follows the RFC 6690 §2 grammar: links separated by commas, each ``<target>`` followed
by ``;``-separated parameters whose values are tokens or quoted strings (quoted strings may
contain commas and semicolons). Whitespace around separators is tolerated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .model import CodecError, ObjectId, Path

__all__ = ["DiscoverResult", "Link", "bootstrap_account_instance", "parse_discover", "parse_link_format"]

_WHITESPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Link:
    """One discovered LwM2M path and its attributes.

    Attributes:
        path: The link target as an LwM2M path.
        attributes: Parameter name -> value (quotes removed); ``None`` for a parameter without a
            value. When a name repeats, the first occurrence wins.
    """

    path: Path
    attributes: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DiscoverResult:
    """A parsed Bootstrap-Discover payload.

    Attributes:
        lwm2m_version: Value of the ``lwm2m`` attribute, if the client sent one.
        links: The object and object-instance links in payload order (the root link ``</>``
            only contributes its attributes).
    """

    lwm2m_version: str | None
    links: tuple[Link, ...]


class _Scanner:
    """Character cursor over a link-format string."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "end of input"
            raise CodecError(f"link format: expected {char!r} at offset {self.pos}, found {found}")
        self.pos += 1

    def until(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        # RFC 6690 §2: quoted-string as in RFC 2616, a backslash escapes the next character.
        self.expect('"')
        out: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise CodecError("link format: unterminated quoted string")
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                escaped = self.peek()
                if not escaped:
                    raise CodecError("link format: unterminated quoted string")
                self.pos += 1
                char = escaped
            out.append(char)


def _parse_params(scanner: _Scanner, params: dict[str, str | None], *, leading_separator: bool) -> None:
    """Parse ``;name[=value]`` parameters up to the next ``,`` or the end."""
    first = True
    while True:
        scanner.skip_space()
        if scanner.at_end() or scanner.peek() == ",":
            return
        if leading_separator or not first:
            scanner.expect(";")
            scanner.skip_space()
        first = False
        name = scanner.until("=;," + _WHITESPACE).lower()
        if not name:
            raise CodecError(f"link format: empty parameter name at offset {scanner.pos}")
        scanner.skip_space()
        value: str | None = None
        if scanner.peek() == "=":
            scanner.pos += 1
            scanner.skip_space()
            value = scanner.quoted() if scanner.peek() == '"' else scanner.until(";," + _WHITESPACE)
        params.setdefault(name, value)


def parse_link_format(payload: bytes | str) -> Iterator[tuple[str | None, dict[str, str | None]]]:
    """Split a link-format document into (target, parameters) pairs.

    Items that do not start with ``<`` (the bare ``lwm2m="1.1"`` form) are yielded with target
    None.

    Args:
        payload: The document, as UTF-8 bytes or text.

    Yields:
        ``(target URI or None, parameters)`` per comma-separated item.

    Raises:
        CodecError: On invalid UTF-8 or a syntax error.
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"link format is not valid UTF-8 ({exc.reason})") from None
    else:
        text = payload
    scanner = _Scanner(text)
    scanner.skip_space()
    if scanner.at_end():
        return
    while True:
        scanner.skip_space()
        params: dict[str, str | None] = {}
        target: str | None = None
        if scanner.peek() == "<":
            scanner.pos += 1
            target = scanner.until(">")
            scanner.expect(">")
            _parse_params(scanner, params, leading_separator=True)
        else:
            _parse_params(scanner, params, leading_separator=False)
            if not params:
                raise CodecError(f"link format: empty item at offset {scanner.pos}")
        yield target, params
        scanner.skip_space()
        if scanner.at_end():
            return
        scanner.expect(",")


def parse_discover(payload: bytes | str) -> DiscoverResult:
    """Parse a Bootstrap-Discover response.

    Args:
        payload: The link-format body.

    Returns:
        The ``lwm2m`` version (from a bare attribute or the root link) and the path links.

    Raises:
        CodecError: On a syntax error or a link target that is not an LwM2M path.
    """
    version: str | None = None
    links: list[Link] = []
    for target, params in parse_link_format(payload):
        if target is None or target == "/":
            if version is None and params.get("lwm2m") is not None:
                version = params["lwm2m"]
            continue
        links.append(Link(Path.parse(target), params))
    return DiscoverResult(version, tuple(links))


def bootstrap_account_instance(links: Iterable[Link]) -> int | None:
    """Find the Security object instance that holds the Bootstrap-Server account.

    Server accounts carry an ``ssid`` attribute in Bootstrap-Discover; the bootstrap account
    has none. This is how Leshan locates it (``BootstrapConfigStoreTaskProvider``, citing
    OMA_LwM2M_for_Developers#522).

    Args:
        links: Links from :func:`parse_discover`, typically of a Discover on ``/0``.

    Returns:
        The instance ID of the first ``/0/x`` link without ``ssid``, or None if there is none.
    """
    for link in links:
        path = link.path
        if (
            path.object_id == ObjectId.SECURITY
            and path.instance_id is not None
            and path.resource_id is None
            and "ssid" not in link.attributes
        ):
            return path.instance_id
    return None
