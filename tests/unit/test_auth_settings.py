"""Token verification and settings validation."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from cellchat.auth import JwtSettings, TokenVerifier, mint_token
from cellchat.chat.domain.errors import Unauthenticated
from cellchat.settings import DEV_JWT_SECRET, SettingsError, from_env

SETTINGS = JwtSettings(verify_key="unit-secret-0123456789abcdef0123")


def test_a_minted_token_verifies() -> None:
    principal = TokenVerifier(SETTINGS).verify(mint_token(SETTINGS, "alice"))
    assert principal.user_id == "alice"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("garbage", "token malformed"),
        (mint_token(SETTINGS, "a", ttl_s=-120), "token expired"),
        (mint_token(JwtSettings(verify_key="another-secret-0123456789abcdef0123"), "a"),
         "token signature invalid"),
        (mint_token(JwtSettings(verify_key=SETTINGS.verify_key, audience="x"), "a"),
         "token audience not accepted"),
        (mint_token(JwtSettings(verify_key=SETTINGS.verify_key, issuer="x"), "a"),
         "token issuer not accepted"),
        (mint_token(JwtSettings(verify_key=SETTINGS.verify_key * 2,
                                algorithms=("HS512",)), "a"), "token algorithm not accepted"),
    ],
)
def test_bad_tokens_say_why_without_echoing(token: str | None, reason: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        TokenVerifier(SETTINGS).verify(token)
    assert str(info.value) == reason
    if token:
        assert token not in str(info.value)


def test_alg_none_is_refused() -> None:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = ".".join([part({"alg": "none", "typ": "JWT"}),
                         part({"sub": "a", "iss": "cellchat", "aud": "cellchat",
                               "exp": 2**40}), ""])
    with pytest.raises(Unauthenticated):
        TokenVerifier(SETTINGS).verify(unsigned)


def test_missing_claims_are_refused() -> None:
    token = jwt.encode({"sub": "a", "iss": "cellchat", "aud": "cellchat"},
                       SETTINGS.verify_key, algorithm="HS256")
    with pytest.raises(Unauthenticated) as info:
        TokenVerifier(SETTINGS).verify(token)
    assert "exp" in str(info.value)


def test_jwt_settings_refuse_unsafe_configurations() -> None:
    with pytest.raises(ValueError, match="real algorithm"):
        JwtSettings(algorithms=("none",), verify_key="k")
    with pytest.raises(ValueError, match="mix"):
        JwtSettings(algorithms=("HS256", "RS256"), verify_key="k" * 32)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtSettings(verify_key="short")


def test_settings_defaults_run_embedded_with_the_dev_secret() -> None:
    settings = from_env({})
    assert settings.uses_embedded_store
    assert settings.dev_jwt
    assert settings.jwt.verify_key == DEV_JWT_SECRET
    assert settings.keyspace == "chat_local"


def test_settings_demand_a_real_key_for_production() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        from_env({"SCYLLA_HOSTS": "db1"})
    settings = from_env({"SCYLLA_HOSTS": "db1, db2", "JWT_SECRET": "s" * 32, "CELL_ID": "eu-1"})
    assert settings.scylla_hosts == ("db1", "db2")
    assert settings.keyspace == "chat_eu_1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CELL_ID": "Bad_Cell"}, "CELL_ID"),
        ({"GRPC_PORT": "http"}, "GRPC_PORT must be an integer"),
        ({"GRPC_PORT": "70000"}, "GRPC_PORT must be between"),
        ({"MIGRATE_ON_START": "maybe"}, "MIGRATE_ON_START"),
        ({"JWT_SECRET_FILE": "/nonexistent/secret"}, "JWT_SECRET_FILE"),
        ({"WS_RATE_PER_S": "-1"}, "WS_RATE_PER_S"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_env(env)


def test_a_remembered_token_still_expires_and_the_memory_is_bounded() -> None:
    now = [time.time()]
    verifier = TokenVerifier(SETTINGS, cache_size=2, clock=lambda: now[0])
    token = mint_token(SETTINGS, "alice", ttl_s=60)
    first = verifier.verify(token)
    assert verifier.verify(token) == first  # remembered
    now[0] = first.expires_at + SETTINGS.leeway_s + 1
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(token)
    assert token not in verifier._verified  # forgotten: the next try gets the full check
    now[0] = time.time()
    others = [mint_token(SETTINGS, user) for user in ("bob", "carol", "dave")]
    for other in others:
        verifier.verify(other)
    assert len(verifier._verified) == 2


def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(SETTINGS)
    forged = mint_token(JwtSettings(verify_key="another-secret-0123456789abcdef-xyz"), "mallory")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="signature"):
            verifier.verify(forged)
    assert not verifier._verified
