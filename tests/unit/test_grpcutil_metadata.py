"""bearer_token: exactly one well-formed `authorization: Bearer <token>` header, or None."""

from __future__ import annotations

import pytest

from cellchat.grpcutil import Metadata, bearer_token


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc.def.ghi")], "abc.def.ghi"),
        ([("authorization", "bearer abc")], "abc"),
        ([("Authorization", "  Bearer   abc  ")], "abc"),
        ([("x-request-id", "1"), ("authorization", "Bearer abc")], "abc"),
        ([], None),
        ([("authorization", "Basic dXNlcjpwdw==")], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization", b"Bearer abc")], None),
        # Two headers: which one did the ingress check? Refuse to choose.
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], None),
    ],
)
def test_bearer_token(metadata: Metadata, token: str | None) -> None:
    assert bearer_token(metadata) == token
