"""Per-connection rate limit, sans I/O: a token bucket and what to do with a flood.

Rules:
- Every client frame costs one token; the bucket holds at most `burst` tokens and refills at
  `rate` per second. Time is passed in (seconds, any monotonic origin), so tests need no clock.
- The first frame refused in a row is answered (`REJECT_NOTIFY`: send one `rate_limited` error
  frame); the following ones are dropped silently (`REJECT`), so a flood cannot make the server
  write as much as it reads. After `strikes` refused frames in a row, the verdict is `CLOSE`
  (close code 4008). An accepted frame ends the streak.
"""

from __future__ import annotations

import enum

import attrs


class Verdict(enum.Enum):
    ALLOW = "allow"
    REJECT_NOTIFY = "reject_notify"
    REJECT = "reject"
    CLOSE = "close"


@attrs.define
class TokenBucket:
    rate: float
    burst: int
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate, burst, float(burst), now)

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


@attrs.define
class FloodGuard:
    bucket: TokenBucket
    strikes: int = 10
    streak: int = 0

    @classmethod
    def create(cls, rate: float, burst: int, now: float, strikes: int = 10) -> FloodGuard:
        return cls(TokenBucket.full(rate, burst, now), strikes)

    def check(self, now: float) -> Verdict:
        if self.bucket.take(now):
            self.streak = 0
            return Verdict.ALLOW
        self.streak += 1
        if self.streak >= self.strikes:
            return Verdict.CLOSE
        return Verdict.REJECT_NOTIFY if self.streak == 1 else Verdict.REJECT
