"""A call's deadline: the client's, capped by the server's limit."""

from __future__ import annotations

import datetime
import math

import pytest

from cellchat.grpcutil import CallLimits, call_deadline


def test_no_deadline_at_all() -> None:
    assert call_deadline(100.0, None, None).at == math.inf


def test_client_deadline_alone() -> None:
    deadline = call_deadline(100.0, datetime.timedelta(milliseconds=250), None)
    assert deadline.at == pytest.approx(100.25)
    assert deadline.message == "deadline exceeded"


def test_server_limit_when_the_client_sets_none() -> None:
    deadline = call_deadline(100.0, None, 30.0)
    assert deadline.at == 130.0
    assert deadline.message == "call exceeded the server's time limit of 30 s"


def test_the_earlier_of_the_two_wins() -> None:
    assert call_deadline(0.0, datetime.timedelta(seconds=5), 30.0).message == "deadline exceeded"
    assert call_deadline(0.0, datetime.timedelta(seconds=60), 30.0).at == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"unary_s": 0}, {"streaming_s": -1.0}, {"max_concurrent_calls": 0}, {"max_message_bytes": 0}],
)
def test_limits_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="CallLimits"):
        CallLimits(**kwargs)  # type: ignore[arg-type]
