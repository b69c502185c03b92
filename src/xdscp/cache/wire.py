"""Just enough protobuf wire encoding to assemble responses from pre-serialized parts (and to
find a field's bytes in a request without re-encoding it).

A DiscoveryResponse is a sequence of fields; concatenating already-encoded fields is a
valid encoding of the message. So each resource is encoded once per version and every
stream's response is a ``bytes.join`` of shared parts plus its own nonce.
"""

from __future__ import annotations

from functools import lru_cache

_LEN = 2  # wire type: length-delimited


_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))  # every varint below 128, encoded once


def varint(n: int) -> bytes:
    if n < 0x80:  # tags and short lengths: most calls, at startup a few million
        return _ONE_BYTE[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or sub-message)."""
    return _tag(number) + varint(len(payload)) + payload


def header(number: int, length: int) -> bytes:
    """The start of a length-delimited field whose payload is ``length`` bytes: a message
    is assembled from its parts with one join, without copying the payload into each
    enclosing field."""
    return _tag(number) + varint(length)


@lru_cache(maxsize=64)
def _tag(number: int) -> bytes:
    return varint((number << 3) | _LEN)


def string_field(number: int, text: str) -> bytes:
    return field(number, text.encode("utf-8")) if text else b""


@lru_cache(maxsize=4096)
def shared_string_field(number: int, text: str) -> bytes:
    """``string_field`` for a value every stream repeats (a snapshot's version, a type URL):
    encoded once, not once per response."""
    return string_field(number, text)


def field_payload(encoded: bytes) -> bytes:
    """The payload of one encoded length-delimited field with a one-byte tag (``field``'s
    output for field numbers below 16): a response entry's Resource or Any."""
    _, pos = read_varint(encoded, 1)
    return encoded[pos:]


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``buf[pos:]`` and the position after it; ValueError if it runs off the end."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
