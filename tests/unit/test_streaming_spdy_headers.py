"""SPDY/3 header blocks: layout, the dictionary, one zlib stream per direction, and limits."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from shim.streaming.spdy.errors import SpdyProtocolError
from shim.streaming.spdy.headers import (
    DICTIONARY,
    HeaderCompressor,
    HeaderDecompressor,
    decode_header_block,
    encode_header_block,
    header_block,
)
from tests.spdy_wire import PeerEncoder, raw_block

# SHA-256 of the 1423 bytes of `headerDictionary` in moby/spdystream's spdy/dictionary.go
# (@f0be51f), the client side we must interoperate with.
SPDYSTREAM_DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_dictionary_is_spdystreams() -> None:
    assert len(DICTIONARY) == 1423
    assert hashlib.sha256(DICTIONARY).hexdigest() == SPDYSTREAM_DICTIONARY_SHA256
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b",*,enq=0.")


def test_block_layout_is_32_bit_lengths() -> None:
    raw = encode_header_block({"StreamType": "error"})
    assert raw == b"\0\0\0\1" + b"\0\0\0\x0astreamtype" + b"\0\0\0\x05error"


def test_several_values_are_nul_joined() -> None:
    raw = encode_header_block({"x-stream-protocol-version": ["v4.channel.k8s.io", "v3"]})
    assert raw.endswith(b"v4.channel.k8s.io\0v3")
    assert decode_header_block(raw) == {"x-stream-protocol-version": ["v4.channel.k8s.io", "v3"]}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"streamtype": ["stdout"]},
        {"streamtype": ["data"], "port": ["80"], "requestid": ["0"]},
        {"empty": [""]},
        {"x": ["a", "b", "c"]},
        {"utf8": ["naïve ☃"]},
    ],
)
def test_round_trip(headers: dict[str, list[str]]) -> None:
    assert decode_header_block(encode_header_block(headers)) == headers


@pytest.mark.parametrize(
    "headers",
    [
        {"": "x"},
        {"nön-ascii": "x"},
        {"a": "x", "A": "y"},
        {"a": []},
        {"a": ["x", ""]},
        {"a": "x\0y"},
    ],
)
def test_encoder_refuses_what_the_spec_forbids(headers: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match="failed to encode header"):
        encode_header_block(headers)


def test_header_block_normalises_input() -> None:
    assert header_block({"Port": "80", "x": ("a", "b")}) == {"port": ["80"], "x": ["a", "b"]}
    assert header_block(None) == {}
    with pytest.raises(ValueError, match="duplicate"):
        header_block({"a": "1", "A": "2"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no count"),
        (b"\0\0\0", "no count"),
        (b"\0\0\0\1", "headers in"),
        (b"\xff\xff\xff\xff" + b"\0" * 16, "headers in"),
        (raw_block([(b"", b"x")]), "empty header name"),
        (raw_block([(b"Upper", b"x")]), "not lower-case"),
        (raw_block([(b"\xc3\xa9", b"x")]), "non-ASCII"),
        (raw_block([(b"a", b"1"), (b"a", b"2")]), "duplicate"),
        (raw_block([(b"a", b"\xff")]), "not UTF-8"),
        (raw_block([(b"a", b"x\0")]), "empty value"),
        (raw_block([(b"a", b"\0x")]), "empty value"),
        (raw_block([(b"a", b"x\0\0y")]), "empty value"),
        (raw_block([(b"a", b"x")]) + b"junk", "after it"),
        (raw_block([(b"a", b"xyz")])[:-1], "truncated"),
        (b"\0\0\0\1\0\0\0\1a\0\0\0\3ab", "truncated"),
        (b"\0\0\0\1\xff\xff\xff\xff" + b"\0" * 8, "truncated"),
    ],
)
def test_decoder_rejects_malformed_blocks(raw: bytes, message: str) -> None:
    with pytest.raises(SpdyProtocolError, match=message):
        decode_header_block(raw)


def test_one_zlib_stream_across_blocks_decodes_with_stdlib() -> None:
    # Our compressor's output, read by an independent inflater: one stream, block by block.
    compressor = HeaderCompressor()
    inflater = zlib.decompressobj(zdict=DICTIONARY)
    blocks = [{"streamtype": ["error"]}, {"streamtype": ["stdin"]}, {"streamtype": ["stdout"]}]
    sizes = []
    for headers in blocks:
        compressed = compressor.compress(headers)
        sizes.append(len(compressed))
        assert compressed.endswith(b"\0\0\xff\xff"), "each block ends with a sync flush"
        assert decode_header_block(inflater.decompress(compressed)) == headers
    # Later blocks reuse the earlier ones as history: a shared context is visibly smaller.
    assert sizes[2] < sizes[0]
    # ...so a later block cannot be inflated on its own.
    with pytest.raises(zlib.error):
        zlib.decompressobj(zdict=DICTIONARY).decompress(compressor.compress(blocks[0]))


def test_independent_compressor_across_blocks() -> None:
    peer = PeerEncoder()
    decompressor = HeaderDecompressor(1 << 16)
    for i in range(20):
        headers = {"streamtype": ["data" if i % 2 else "error"], "requestid": [str(i // 2)]}
        assert decompressor.decompress(peer.compress(raw_block_of(headers))) == headers


def raw_block_of(headers: dict[str, list[str]]) -> bytes:
    return raw_block([(k.encode(), "\0".join(v).encode()) for k, v in headers.items()])


def test_block_without_dictionary_is_refused() -> None:
    plain = zlib.compressobj()
    compressed = plain.compress(raw_block([(b"a", b"b")])) + plain.flush(zlib.Z_SYNC_FLUSH)
    # A stream made without the dictionary is still a valid zlib stream: it must just decode.
    assert HeaderDecompressor(1024).decompress(compressed) == {"a": ["b"]}
    wrong = zlib.compressobj(zdict=b"not the spdy dictionary")
    compressed = wrong.compress(raw_block([(b"a", b"b")])) + wrong.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(SpdyProtocolError, match="failed to inflate"):
        HeaderDecompressor(1024).decompress(compressed)


def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(SpdyProtocolError, match="failed to inflate"):
        HeaderDecompressor(1024).decompress(b"\x00\x01garbage")


def test_zlib_bomb_stops_at_the_limit() -> None:
    # 64 MiB of one header value compresses to ~64 KiB; inflating stops at the 256 KiB limit.
    value = b"a" * (64 << 20)
    peer = PeerEncoder()
    compressed = peer.compress(raw_block([(b"x", value)]))
    assert len(compressed) < 100_000
    with pytest.raises(SpdyProtocolError, match="larger than 262144 bytes"):
        HeaderDecompressor(256 << 10).decompress(compressed)


def test_block_just_under_the_limit_passes() -> None:
    raw = raw_block([(b"x", b"a" * 1000)])
    decompressor = HeaderDecompressor(len(raw) + 1)
    assert decompressor.decompress(PeerEncoder().compress(raw)) == {"x": ["a" * 1000]}


def test_finished_zlib_stream_is_refused() -> None:
    peer = zlib.compressobj(zdict=DICTIONARY)
    compressed = peer.compress(raw_block([(b"a", b"b")])) + peer.flush(zlib.Z_FINISH)
    decompressor = HeaderDecompressor(1024)
    assert decompressor.decompress(compressed) == {"a": ["b"]}
    with pytest.raises(SpdyProtocolError, match="has ended"):
        decompressor.decompress(b"\0\0\xff\xff")


def test_bytes_after_the_zlib_stream_are_refused() -> None:
    peer = zlib.compressobj(zdict=DICTIONARY)
    compressed = peer.compress(raw_block([(b"a", b"b")])) + peer.flush(zlib.Z_FINISH)
    with pytest.raises(SpdyProtocolError, match="after the zlib stream"):
        HeaderDecompressor(1024).decompress(compressed + b"more")
