"""Exceptions to gRPC statuses: precise for known errors, opaque for bugs."""

from __future__ import annotations

import logging

import purerpc
import pytest
from google.protobuf.message import DecodeError

from cellchat.grpcutil import ErrorMap, StatusCode, rpc_error, single_exception
from cellchat.grpcutil.statuses import UNEXPECTED_MESSAGE, status_for_exception


class Base(Exception):
    pass


class Missing(Base):
    pass


class Secret(Base):
    pass


ERRORS = ErrorMap(
    {
        Base: StatusCode.FAILED_PRECONDITION,
        Missing: StatusCode.NOT_FOUND,
        Secret: (StatusCode.UNAVAILABLE, "try again later"),
    }
)


def code_and_message(exc: BaseException) -> tuple[StatusCode, str]:
    status = status_for_exception(exc, ERRORS, method="/test.Service/Method")
    return status.status_code, status.status_message


def test_most_specific_rule_wins_and_message_is_str_of_exception() -> None:
    assert code_and_message(Missing("conversation c1")) == (StatusCode.NOT_FOUND, "conversation c1")
    assert code_and_message(Base("edit window passed")) == (
        StatusCode.FAILED_PRECONDITION,
        "edit window passed",
    )


def test_subclass_of_mapped_class_inherits_its_rule() -> None:
    class VeryMissing(Missing):
        pass

    assert code_and_message(VeryMissing("x")) == (StatusCode.NOT_FOUND, "x")


def test_fixed_message_hides_the_exception_text() -> None:
    assert code_and_message(Secret("host db-3 refused")) == (
        StatusCode.UNAVAILABLE,
        "try again later",
    )


def test_rpc_failed_error_keeps_its_status() -> None:
    assert code_and_message(rpc_error(StatusCode.PERMISSION_DENIED, "not yours")) == (
        StatusCode.PERMISSION_DENIED,
        "not yours",
    )
    assert code_and_message(purerpc.NotFoundError("gone")) == (StatusCode.NOT_FOUND, "gone")


def test_groups_of_one_are_unwrapped_at_any_depth() -> None:
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [Missing("m1")])])
    assert single_exception(group).args == ("m1",)
    assert code_and_message(group) == (StatusCode.NOT_FOUND, "m1")


def test_group_of_several_errors_is_not_guessed_at(caplog: pytest.LogCaptureFixture) -> None:
    group = ExceptionGroup("two", [Missing("a"), Secret("b")])
    with caplog.at_level(logging.ERROR, logger="cellchat.grpcutil.statuses"):
        assert code_and_message(group) == (StatusCode.UNKNOWN, UNEXPECTED_MESSAGE)
    assert "/test.Service/Method" in caplog.text


def test_unmapped_error_is_logged_and_its_message_never_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cellchat.grpcutil.statuses"):
        code, message = code_and_message(KeyError("password=hunter2"))
    assert (code, message) == (StatusCode.UNKNOWN, UNEXPECTED_MESSAGE)
    assert "hunter2" not in message
    assert caplog.records[0].exc_info is not None


def test_undecodable_request_is_internal_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        code, _ = code_and_message(DecodeError("truncated"))
    assert code is StatusCode.INTERNAL
    assert not caplog.records


def test_translate_reraises_mapped_errors_as_rpc_failed_error() -> None:
    with pytest.raises(purerpc.RpcFailedError) as info, ERRORS.translate():
        raise Missing("m")
    assert info.value.status.status_code is StatusCode.NOT_FOUND
    assert isinstance(info.value.__cause__, Missing)


def test_translate_lets_unmapped_errors_through() -> None:
    with pytest.raises(ZeroDivisionError), ERRORS.translate():
        raise ZeroDivisionError
