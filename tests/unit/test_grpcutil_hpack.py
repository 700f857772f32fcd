"""The server's HPACK encoder: its shortcut for the usual response fields keeps the client's
decoder in step, whatever came before on the connection."""

from __future__ import annotations

import hpack

from cellchat.grpcutil._connection import _RequestDecoder, _ResponseEncoder

HEADERS = [(":status", "200"), ("content-type", "application/grpc+proto")]
TRAILERS = [("grpc-status", "0")]
WITH_MESSAGE = [("grpc-status", "5"), ("grpc-message", "no%20such%20thing")]
METADATA = [(":status", "200"), ("content-type", "application/grpc"), ("x-request-id", "r1")]


def test_a_connection_of_usual_and_unusual_header_lists_decodes_as_sent() -> None:
    encoder, decoder = _ResponseEncoder(), hpack.Decoder()
    sequence = [HEADERS, TRAILERS, WITH_MESSAGE, METADATA, HEADERS, TRAILERS, METADATA, TRAILERS]
    for headers in sequence:
        assert decoder.decode(encoder.encode(headers)) == headers
    # Only the unusual fields were indexed, the same on both sides.
    assert list(encoder.header_table.dynamic_entries) == list(decoder.header_table.dynamic_entries)
    assert (b"grpc-status", b"0") not in encoder.header_table.dynamic_entries


def test_the_usual_fields_leave_the_dynamic_table_alone() -> None:
    encoder = _ResponseEncoder()
    for _ in range(3):
        encoder.encode(HEADERS)
        encoder.encode(TRAILERS)
    assert len(encoder.header_table.dynamic_entries) == 0


def test_a_table_size_change_is_announced_by_the_next_block() -> None:
    encoder, decoder = _ResponseEncoder(), hpack.Decoder()
    assert decoder.decode(encoder.encode(WITH_MESSAGE)) == WITH_MESSAGE
    # The client's SETTINGS_HEADER_TABLE_SIZE: h2 sets it on the encoder, whose next block
    # must open with the size update, even if only usual fields follow.
    encoder.header_table_size = 0
    block = encoder.encode(TRAILERS)
    assert block != encoder.encode(TRAILERS)
    decoder.header_table_size = 4096  # what the client allows; the block shrinks it
    assert decoder.decode(block) == TRAILERS
    assert decoder.header_table.maxsize == 0
    assert len(decoder.header_table.dynamic_entries) == 0


# ---------------------------------------------------------------- decoding requests

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/pkg.Service/Method"),
    (":authority", "localhost:50051"),
    ("te", "trailers"),
    ("content-type", "application/grpc"),
    ("user-agent", "grpc-python/1.x"),
]


def _blocks() -> list[bytes]:
    """What a client sends over one connection: every HPACK representation, and indexes
    past the first byte once the dynamic table holds more than 66 fields."""
    encoder = hpack.Encoder()
    blocks = [encoder.encode([*REQUEST, ("grpc-timeout", f"{n}u")]) for n in range(3)]
    blocks.append(encoder.encode([*REQUEST, ("authorization", "Bearer t", True)]))
    # hpack keeps a literal that is not Huffman-coded as a view of the block it came in.
    blocks.append(encoder.encode([*REQUEST, ("x-plain", "not huffman")], huffman=False))
    blocks.append(encoder.encode([("x-plain", "not huffman"), *REQUEST]))
    blocks += [encoder.encode([(f"k{n}", "v")]) for n in range(100)]
    blocks.append(encoder.encode([("k1", "v"), ("k2", "v"), *REQUEST]))
    encoder.header_table_size = 256
    blocks.append(encoder.encode(REQUEST))
    blocks.append(encoder.encode([*REQUEST, ("grpc-timeout", "1S")]))
    return blocks


def _outcome(decoder: hpack.Decoder, block: bytes) -> object:
    try:
        return decoder.decode(block, raw=True)
    except hpack.HPACKError as exc:
        return type(exc)


def test_the_request_decoder_decodes_a_connection_as_hpack_does() -> None:
    ours, theirs = _RequestDecoder(), hpack.Decoder()
    for block in _blocks():
        decoded = _outcome(ours, block)
        assert decoded == _outcome(theirs, block)
        assert isinstance(decoded, list)
        assert all(type(name) is bytes and type(value) is bytes for name, value in decoded)
    assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries
    assert ours.header_table.maxsize == theirs.header_table.maxsize == 256


def test_the_request_decoder_refuses_what_hpack_refuses() -> None:
    indexed = hpack.Encoder().encode(REQUEST)
    faulty = {
        "index 0": b"\x80",
        "index past the tables": b"\xbf",
        "long index past the tables": b"\xff\x80\x01",
        "size update after a field": indexed + b"\x3f\xe1\x1f",
        "truncated literal": b"\x00\x05ab",
        "size update over the limit": b"\x3f\xe1\xff\x03",
    }
    for name, block in faulty.items():
        ours, theirs = _RequestDecoder(), hpack.Decoder()
        assert _outcome(ours, block) == _outcome(theirs, block), name
        assert isinstance(_outcome(_RequestDecoder(), block), type), name
    small = _RequestDecoder(max_header_list_size=100)
    assert _outcome(small, indexed) is hpack.OversizedHeaderListError
