"""The per-connection token bucket and flood verdicts, with time passed in."""

from __future__ import annotations

from cellchat.chat.realtime.ratelimit import FloodGuard, TokenBucket, Verdict


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)  # 0.5 s * 2/s = one token
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, True]
    assert not bucket.take(100.0)  # never more than the burst


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


def test_flood_notifies_once_then_closes_after_strikes() -> None:
    guard = FloodGuard.create(rate=1.0, burst=2, now=0.0, strikes=4)
    verdicts = [guard.check(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.REJECT_NOTIFY, Verdict.REJECT,
                        Verdict.REJECT, Verdict.CLOSE]


def test_an_accepted_frame_ends_the_streak() -> None:
    guard = FloodGuard.create(rate=1.0, burst=1, now=0.0, strikes=3)
    assert guard.check(0.0) is Verdict.ALLOW
    assert guard.check(0.0) is Verdict.REJECT_NOTIFY
    assert guard.check(0.0) is Verdict.REJECT
    assert guard.check(1.0) is Verdict.ALLOW
    assert guard.check(1.0) is Verdict.REJECT_NOTIFY  # a new streak notifies again
