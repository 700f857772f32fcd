"""From exceptions to gRPC statuses: what a client sees when a call fails.

purerpc sends a precise status only for `purerpc.RpcFailedError` (and its subclasses such as
`purerpc.NotFoundError`): anything else escaping a handler reached the client as CANCELLED with
the exception's repr as message, leaking internals. Our server (`grpcutil.server`) closes every
failed call through `status_for_exception` instead:

1. `RpcFailedError` carries its status as is.
2. An exception group holding a single exception stands for that exception: under anyio 4 and
   trio's strict exception groups, a handler that consumes its request stream inside a nursery
   (typical for client-streaming and bidi calls) raises `ExceptionGroup([NotFound(...)])` rather
   than `NotFound(...)`. A group with several different errors is not guessed at.
3. The service's `ErrorMap` (exception class → code) decides for domain errors, most specific
   class first, so `StoreTimeout(StoreError)` may map differently from its parent.
4. Anything else is a bug: logged with its traceback, answered UNKNOWN with a fixed message.

Rules: messages of mapped errors are the exception's `str()` unless the map fixes one, so
domain errors must be written for the client to read; unmapped errors never leak a message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeAlias

import attrs
import purerpc
from google.protobuf.message import DecodeError
from purerpc.grpclib.exceptions import MessageTooLargeError, ProtocolError

__all__ = [
    "ErrorMap",
    "Rule",
    "Status",
    "StatusCode",
    "rpc_error",
    "single_exception",
    "status_for_exception",
]

log = logging.getLogger(__name__)

StatusCode = purerpc.StatusCode
Status = purerpc.Status

#: A code alone sends the exception's `str()` as message; a (code, message) pair a fixed one.
Rule: TypeAlias = "purerpc.StatusCode | tuple[purerpc.StatusCode, str]"

UNEXPECTED_MESSAGE = "internal error"


def rpc_error(code: purerpc.StatusCode, message: str = "") -> purerpc.RpcFailedError:
    """An exception that, raised from a handler, ends the call with exactly this status."""
    return purerpc.RpcFailedError(purerpc.Status(code, message))


def single_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) groups of one, or `exc` itself otherwise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@attrs.frozen
class ErrorMap:
    """Which status each kind of error gets: `ErrorMap({NotFound: StatusCode.NOT_FOUND})`."""

    rules: Mapping[type[BaseException], Rule] = attrs.field(factory=dict)

    def status_for(self, exc: BaseException) -> purerpc.Status | None:
        """The status for `exc` by the most specific rule that matches it, if any."""
        for cls in type(exc).__mro__:
            rule = self.rules.get(cls)
            if rule is None:
                continue
            if isinstance(rule, tuple):
                code, message = rule
                return purerpc.Status(code, message)
            return purerpc.Status(rule, str(exc))
        return None

    @contextmanager
    def translate(self) -> Iterator[None]:
        """Re-raise mapped errors as `RpcFailedError` (for code that calls purerpc directly)."""
        try:
            yield
        except Exception as exc:
            status = self.status_for(single_exception(exc))
            if status is None:
                raise
            raise purerpc.RpcFailedError(status) from exc


def status_for_exception(exc: BaseException, errors: ErrorMap, *, method: str) -> purerpc.Status:
    """The status that ends a call whose handler raised `exc` (see the module docstring)."""
    exc = single_exception(exc)
    if isinstance(exc, purerpc.RpcFailedError):
        return exc.status
    mapped = errors.status_for(exc)
    if mapped is not None:
        return mapped
    # Failures to read the request: the client's fault, or a broken peer; no traceback needed.
    if isinstance(exc, DecodeError):
        return purerpc.Status(StatusCode.INTERNAL, "could not decode the request message")
    if isinstance(exc, MessageTooLargeError):
        return purerpc.Status(StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, ProtocolError):
        return purerpc.Status(StatusCode.INTERNAL, str(exc))
    log.error("unexpected error in %s", method, exc_info=exc)
    return purerpc.Status(StatusCode.UNKNOWN, UNEXPECTED_MESSAGE)
