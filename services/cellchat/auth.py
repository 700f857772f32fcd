"""Bearer tokens: one verifier shared by gRPC metadata and the WebSocket handshake.

Algorithms are pinned by configuration (never taken from the token), and `exp`, `sub`, `iss`
and `aud` are required. Error messages say what is wrong with a token without echoing it, so a
token never reaches a log through an error.

A client sends the same token with every call until it expires, and checking its signature is a
noticeable part of a small call's cost; so tokens that verified are remembered (a bounded LRU,
`cache_size` entries): a remembered token costs a dict lookup and its expiry check against the
clock. Only the expiry can change a verified token's verdict: the keys and rules are fixed for
the verifier's life, and `nbf`/`iat` can only have passed since.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
import jwt

from cellchat.chat.domain.errors import Unauthenticated

_ASYMMETRIC_PREFIXES = ("RS", "ES", "PS", "Ed")


@attrs.frozen
class JwtSettings:
    algorithms: tuple[str, ...] = ("HS256",)
    verify_key: str = attrs.field(default="", repr=False)  # HMAC secret or PEM public key
    signing_key: str = attrs.field(default="", repr=False)  # for `cellchat token` only
    issuer: str = "cellchat"
    audience: str = "cellchat"
    leeway_s: int = 30

    def __attrs_post_init__(self) -> None:
        if not self.algorithms or "none" in {a.lower() for a in self.algorithms}:
            raise ValueError("JWT_ALGORITHMS must name at least one real algorithm")
        symmetric = [a for a in self.algorithms if a.startswith("HS")]
        if symmetric and len(symmetric) != len(self.algorithms):
            # One key cannot safely serve both families (the classic key-confusion attack).
            raise ValueError("JWT_ALGORITHMS must not mix HMAC and public-key algorithms")
        if not self.verify_key:
            raise ValueError("a JWT verification key is required (JWT_SECRET or JWT_PUBLIC_KEY)")
        if symmetric and len(self.verify_key.encode()) < 32:
            raise ValueError("JWT_SECRET must be at least 32 bytes for HMAC algorithms")


@attrs.frozen
class Principal:
    user_id: str
    expires_at: int


class TokenVerifier:
    def __init__(self, settings: JwtSettings, *, cache_size: int = 4096,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("missing bearer token")
        known = self._verified.get(token)
        if known is not None:
            if self._clock() > known.expires_at + self._settings.leeway_s:
                del self._verified[token]
                raise Unauthenticated("token expired")
            self._verified.move_to_end(token)
            return known
        principal = self._decode(token)
        if self._cache_size > 0:
            self._verified[token] = principal
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Principal:
        s = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                s.verify_key,
                algorithms=list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer not accepted") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated("token algorithm not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature invalid") from None
        except jwt.PyJWTError:
            raise Unauthenticated("token malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token subject invalid")
        return Principal(subject, int(claims["exp"]))


def mint_token(settings: JwtSettings, subject: str, *, ttl_s: int = 3600,
               now: float | None = None) -> str:
    """A token for development and tests; production tokens come from the marketplace's IdP."""
    key = settings.signing_key or settings.verify_key
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, key, algorithm=settings.algorithms[0])
