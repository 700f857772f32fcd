"""The server's one-pass check of received headers agrees with h2's own validation, which it
replaces: same verdict on every block, valid or malformed."""

from __future__ import annotations

import h2.exceptions
import h2.utilities
import pytest

from cellchat.grpcutil._connection import _malformed

Headers = list[tuple[str, str]]

GRPC: Headers = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/pkg.Service/Method"),
    (":authority", "localhost:50051"),
    ("te", "trailers"),
    ("content-type", "application/grpc"),
    ("grpc-timeout", "29999954u"),
    ("user-agent", "grpc-python/1.x"),
]


def _without(name: str) -> Headers:
    return [field for field in GRPC if field[0] != name]


REQUESTS: dict[str, Headers] = {
    "grpc": GRPC,
    "host instead of authority": [*_without(":authority"), ("host", "localhost:50051")],
    "host equal to authority": [*GRPC, ("host", "localhost:50051")],
    "te in other case": [*_without("te"), ("te", "Trailers")],
    "empty value": [*GRPC, ("x-empty", "")],
    "inner spaces": [*GRPC, ("x-note", "a b\tc")],
    "extended connect": [(":method", "CONNECT"), (":protocol", "websocket"), *GRPC[1:]],
    "uppercase name": [*GRPC, ("X-Trace", "1")],
    "uppercase pseudo-header": [(":Method", "POST"), *GRPC[1:]],
    "name with a trailing space": [*GRPC, ("x-trace ", "1")],
    "name with a leading tab": [*GRPC, ("\tx-trace", "1")],
    "empty name": [*GRPC, ("", "1")],
    "value with a leading space": [*GRPC, ("x-trace", " 1")],
    "value with a trailing vertical tab": [*GRPC, ("x-trace", "1\x0b")],
    "te gzip": [*_without("te"), ("te", "gzip")],
    "connection": [*GRPC, ("connection", "keep-alive")],
    "keep-alive": [*GRPC, ("keep-alive", "300")],
    "transfer-encoding": [*GRPC, ("transfer-encoding", "chunked")],
    "upgrade": [*GRPC, ("upgrade", "h2c")],
    "proxy-connection": [*GRPC, ("proxy-connection", "close")],
    "duplicate pseudo-header": [*GRPC[:3], (":path", "/other/Method"), *GRPC[3:]],
    "pseudo-header after a regular one": [*_without(":authority"), (":authority", "x")],
    "unknown pseudo-header": [(":tenant", "a"), *GRPC],
    "no method": _without(":method"),
    "no scheme": _without(":scheme"),
    "no path": _without(":path"),
    "status in a request": [(":status", "200"), *GRPC],
    "protocol without connect": [(":protocol", "websocket"), *GRPC],
    "neither authority nor host": _without(":authority"),
    "host and authority differ": [*GRPC, ("host", "elsewhere")],
    "empty path": [(":path", "") if name == ":path" else (name, value) for name, value in GRPC],
}

TRAILERS: dict[str, Headers] = {
    "plain": [("x-checksum", "abc"), ("x-count", "3")],
    "uppercase": [("X-Checksum", "abc")],
    "connection-specific": [("connection", "close")],
    "pseudo-header": [(":path", "/x")],
}


def _h2_rejects(headers: Headers, *, trailers: bool) -> bool:
    flags = h2.utilities.HeaderValidationFlags(
        is_client=False, is_trailer=trailers, is_response_header=False, is_push_promise=False
    )
    raw = [(name.encode(), value.encode()) for name, value in headers]
    try:
        list(h2.utilities.validate_headers(raw, flags))
    except (h2.exceptions.ProtocolError, IndexError):  # h2 indexes an empty name's first byte
        return True
    return False


@pytest.mark.parametrize("case", REQUESTS)
def test_requests_get_the_same_verdict_as_from_h2(case: str) -> None:
    headers = REQUESTS[case]
    problem = _malformed(headers, trailers=False)
    assert (problem is not None) == _h2_rejects(headers, trailers=False), problem


@pytest.mark.parametrize("case", TRAILERS)
def test_trailers_get_the_same_verdict_as_from_h2(case: str) -> None:
    headers = TRAILERS[case]
    problem = _malformed(headers, trailers=True)
    assert (problem is not None) == _h2_rejects(headers, trailers=True), problem


def test_the_reason_names_the_fault() -> None:
    problem = _malformed([*GRPC, ("X-Trace", "1")], trailers=False)
    assert problem == "uppercase header name 'X-Trace'"
    assert _malformed(GRPC, trailers=False) is None
