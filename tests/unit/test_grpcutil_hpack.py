"""The server's HPACK encoder: its shortcut for the usual response fields keeps the client's
decoder in step, whatever came before on the connection."""

from __future__ import annotations

import hpack

from cellchat.grpcutil._connection import _ResponseEncoder

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
