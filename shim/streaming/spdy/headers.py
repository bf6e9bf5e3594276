"""SPDY/3 name/value header blocks (draft 3 §2.6.10) and their zlib compression (§2.6.10.1).

A block is a 32-bit count, then per header a 32-bit name length, the name, a 32-bit value length
and the value; several values of one name are joined by NUL. Names are lower-case US-ASCII and
unique. Blocks are deflated with a preset dictionary, and the zlib stream is one per direction
of a connection: each block continues the stream and ends with a sync flush, so the receiver can
inflate it whole without waiting for the next one. Python's zlib does the deflating; only the
layout and the limits are ours (no maintained Python SPDY library exists, see `__init__`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from shim.streaming.spdy.errors import SpdyProtocolError

HeaderBlock: TypeAlias = dict[str, list[str]]
"""A decoded block: lower-case name -> its values, in order (like Go's http.Header)."""

HeaderInput: TypeAlias = Mapping[str, str | Sequence[str]]
"""What the encoder takes: a value may be one string or a sequence of them."""

# The preset dictionary is a protocol constant of SPDY/3 (draft 3 §2.6.10.1): 65 words, each
# preceded by its length as a 32-bit big-endian integer, then a run of raw text (status codes and
# reasons, dates, common content types). It must match the peer's byte for byte: zlib checks its
# Adler-32 (the FDICT id in the stream header) before inflating anything.
_DICTIONARY_WORDS: Final = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)  # fmt: skip
_DICTIONARY_TEXT: Final = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)

DICTIONARY: Final[bytes] = b"".join(
    struct.pack(">I", len(word)) + word.encode("ascii") for word in _DICTIONARY_WORDS
) + _DICTIONARY_TEXT.encode("ascii")

_U32 = struct.Struct(">I")


def header_block(headers: HeaderInput | None) -> HeaderBlock:
    """`headers` in the decoded shape: lower-case names, every value a list."""
    block: HeaderBlock = {}
    for name, value in (headers or {}).items():
        if name.lower() in block:
            raise ValueError(f"failed to encode header {name!r}: duplicate name {name.lower()!r}")
        block[name.lower()] = [value] if isinstance(value, str) else list(value)
    return block


def encode_header_block(headers: HeaderInput) -> bytes:
    """The uncompressed block for `headers`; names are lower-cased as the spec requires."""
    entries: dict[str, bytes] = {}
    for raw_name, raw_value in headers.items():
        name = raw_name.lower()
        if not name or not name.isascii():
            raise ValueError(f"failed to encode header {raw_name!r}: names are non-empty ASCII")
        if name in entries:
            raise ValueError(f"failed to encode header {raw_name!r}: duplicate name {name!r}")
        values = [raw_value] if isinstance(raw_value, str) else list(raw_value)
        if not values or any("\0" in v for v in values) or (len(values) > 1 and "" in values):
            # A block can say "one empty value" or "several non-empty values", nothing else.
            raise ValueError(f"failed to encode header {name!r}: bad values {values!r}")
        entries[name] = "\0".join(values).encode("utf-8")
    parts = [_U32.pack(len(entries))]
    for name, value in entries.items():
        encoded_name = name.encode("ascii")
        parts += [_U32.pack(len(encoded_name)), encoded_name, _U32.pack(len(value)), value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> HeaderBlock:
    """Parse an uncompressed block; anything malformed is a `SpdyProtocolError`."""
    end = len(block)
    if end < 4:
        raise SpdyProtocolError(f"failed to decode header block: {end} bytes, no count")
    (count,) = _U32.unpack_from(block, 0)
    # Each entry takes at least 8 bytes: a count larger than that is a lie, reject it up front.
    if count > (end - 4) // 8:
        raise SpdyProtocolError(f"failed to decode header block: {count} headers in {end} bytes")
    headers: HeaderBlock = {}
    pos = 4
    for _ in range(count):
        name_bytes, pos = _read_string(block, pos)
        value_bytes, pos = _read_string(block, pos)
        name = _decode_name(name_bytes)
        if name in headers:
            raise SpdyProtocolError(f"failed to decode header block: duplicate header {name!r}")
        try:
            value = value_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpdyProtocolError(f"failed to decode header {name!r}: value not UTF-8") from e
        values = value.split("\0")
        if len(values) > 1 and "" in values:
            raise SpdyProtocolError(f"failed to decode header {name!r}: empty value in a list")
        headers[name] = values
    if pos != end:
        raise SpdyProtocolError(f"failed to decode header block: {end - pos} bytes after it")
    return headers


def _read_string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(block):
        raise SpdyProtocolError("failed to decode header block: truncated length")
    (length,) = _U32.unpack_from(block, pos)
    pos += 4
    if pos + length > len(block):
        raise SpdyProtocolError(f"failed to decode header block: {length}-byte string truncated")
    return block[pos : pos + length], pos + length


def _decode_name(raw: bytes) -> str:
    if not raw:
        raise SpdyProtocolError("failed to decode header block: empty header name")
    if not raw.isascii():
        raise SpdyProtocolError(f"failed to decode header block: non-ASCII name {raw!r}")
    name = raw.decode("ascii")
    if name != name.lower():
        raise SpdyProtocolError(f"failed to decode header block: name {name!r} not lower-case")
    return name


class HeaderCompressor:
    """Deflates the blocks of one direction of one connection, in order."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zdict=DICTIONARY)

    def compress(self, headers: HeaderInput) -> bytes:
        raw = encode_header_block(headers)
        return self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """Inflates the blocks of one direction of one connection, in order, each to at most
    `max_block_size` bytes."""

    def __init__(self, max_block_size: int) -> None:
        self._zlib = zlib.decompressobj(zdict=DICTIONARY)
        self._max_block_size = max_block_size

    def decompress(self, compressed: bytes) -> HeaderBlock:
        if self._zlib.eof:
            raise SpdyProtocolError("failed to inflate header block: the zlib stream has ended")
        try:
            # max_length makes zlib stop producing output at the limit; what it could not
            # consume stays in unconsumed_tail, which is how we know the block is too big.
            raw = self._zlib.decompress(compressed, self._max_block_size)
        except zlib.error as e:
            raise SpdyProtocolError(f"failed to inflate header block: {e}") from e
        if self._zlib.unconsumed_tail:
            raise SpdyProtocolError(
                f"failed to inflate header block: larger than {self._max_block_size} bytes"
            )
        if self._zlib.unused_data:
            raise SpdyProtocolError("failed to inflate header block: bytes after the zlib stream")
        return decode_header_block(raw)
