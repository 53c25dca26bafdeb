"""The few DER (X.690) encodings the certificate templates need, by hand.

Only definite-length, primitive-or-constructed TLVs: enough to concatenate parts that a real ASN.1
library (``cryptography``) encoded once, and to find a TLV inside bytes that library has already
parsed and validated. Everything built with these helpers is tested byte for byte against
``cryptography``'s own output.
"""

from __future__ import annotations

from collections.abc import Iterable

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


def context(number: int) -> int:
    """The tag of ``[number]`` constructed (explicit tagging, or an implicitly tagged SET/SEQUENCE)."""
    return 0xA0 | number


def length(size: int) -> bytes:
    """Definite length (X.690 §8.1.3): short form below 128, long form above."""
    if size < 0x80:
        return bytes((size,))
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(encoded),)) + encoded


def header(tag: int, size: int) -> bytes:
    """Tag and length of a value of ``size`` bytes."""
    return bytes((tag,)) + length(size)


def tlv(tag: int, content: bytes) -> bytes:
    """Tag, length, value."""
    return bytes((tag,)) + length(len(content)) + content


def set_of(encodings: Iterable[bytes]) -> bytes:
    """SET OF: DER orders the elements by their encodings (X.690 §11.6)."""
    return tlv(SET, b"".join(sorted(encodings)))


def element(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """The TLV at ``offset``: its tag, where its value starts and where it ends.

    Single-byte tags and definite lengths only (all DER needs for the structures read here);
    raises :class:`ValueError` when the bytes are not that."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not supported")
    start = offset + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("unsupported DER length")
        size = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + size
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end
