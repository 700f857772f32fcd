"""The sans-I/O presence tracker: time is an argument, no sockets, no sleeps."""

from __future__ import annotations

import pytest

from cellchat.presence.model import (
    Presence,
    Status,
    Typing,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)
from cellchat.presence.tracker import PresenceTracker

TTL = 15_000
TYPING_TTL = 6_000
T0 = 1_700_000_000_000


@pytest.fixture
def tracker() -> PresenceTracker:
    return PresenceTracker(lease_ttl_ms=TTL, typing_ttl_ms=TYPING_TTL)


def test_first_connection_brings_a_user_online_and_the_last_close_takes_them_offline(
    tracker: PresenceTracker,
) -> None:
    assert tracker.connection_opened("r1", "c1", "alice", T0) == [
        UserOnline("alice", Status.ONLINE, T0)
    ]
    assert tracker.connection_opened("r2", "c9", "alice", T0 + 1) == []  # second device
    assert tracker.presence("alice", T0 + 2) == Presence("alice", Status.ONLINE, T0 + 2)
    assert tracker.connection_closed("r1", "c1", T0 + 3) == []
    assert tracker.connection_closed("r2", "c9", T0 + 4) == [UserOffline("alice", T0 + 4, T0 + 4)]
    assert tracker.presence("alice", T0 + 5) == Presence("alice", Status.OFFLINE, T0 + 4)


def test_a_user_never_seen_is_offline_with_no_last_seen(tracker: PresenceTracker) -> None:
    assert tracker.presence("nobody", T0) == Presence("nobody", Status.OFFLINE, 0)


def test_closing_an_unknown_connection_is_harmless(tracker: PresenceTracker) -> None:
    assert tracker.connection_closed("r1", "nope", T0) == []


def test_same_connection_id_on_two_replicas_are_two_connections(tracker: PresenceTracker) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    tracker.connection_opened("r2", "c1", "alice", T0)
    assert tracker.connection_closed("r1", "c1", T0 + 1) == []
    assert tracker.statistics().connections == 1


def test_reusing_a_connection_id_for_another_user_closes_the_old_one(
    tracker: PresenceTracker,
) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    assert tracker.connection_opened("r1", "c1", "bob", T0 + 5) == [
        UserOffline("alice", T0 + 5, T0 + 5),
        UserOnline("bob", Status.ONLINE, T0 + 5),
    ]


def test_a_lease_lapses_unless_renewed_and_last_seen_is_its_deadline(
    tracker: PresenceTracker,
) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    assert tracker.expire(T0 + TTL - 1) == []
    # The sweep notices late; last seen is still when the lease lapsed.
    assert tracker.expire(T0 + TTL + 700) == [UserOffline("alice", T0 + TTL, T0 + TTL + 700)]
    assert tracker.presence("alice", T0 + TTL + 800).last_seen_ms == T0 + TTL


def test_a_lease_lapses_exactly_at_its_deadline(tracker: PresenceTracker) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    assert tracker.expire(T0 + TTL) == [UserOffline("alice", T0 + TTL, T0 + TTL)]


def test_heartbeats_keep_connections_alive(tracker: PresenceTracker) -> None:
    tracker.heartbeat("r1", {"c1": "alice"}, T0)
    for beat in range(1, 10):
        now = T0 + beat * 5_000
        assert tracker.heartbeat("r1", {"c1": "alice"}, now) == []
        assert tracker.expire(now) == []
    assert tracker.presence("alice", T0 + 50_000).status is Status.ONLINE


def test_a_heartbeat_is_the_complete_set_of_the_replicas_connections(
    tracker: PresenceTracker,
) -> None:
    tracker.heartbeat("r1", {"c1": "alice", "c2": "bob"}, T0)
    tracker.connection_opened("r2", "c7", "carol", T0)
    changes = tracker.heartbeat("r1", {"c2": "bob", "c3": "dave"}, T0 + 5_000)
    assert changes == [
        UserOffline("alice", T0 + 5_000, T0 + 5_000),
        UserOnline("dave", Status.ONLINE, T0 + 5_000),
    ]
    assert tracker.connections_of("r1") == {"c2", "c3"}
    assert tracker.connections_of("r2") == {"c7"}  # other replicas are untouched


def test_a_dead_replicas_users_go_offline_while_others_stay(tracker: PresenceTracker) -> None:
    tracker.heartbeat("r1", {"a1": "alice", "b1": "bob"}, T0)
    tracker.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0)
    # r1 dies right after T0; r2 keeps beating.
    tracker.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0 + 5_000)
    tracker.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0 + 10_000)
    assert tracker.expire(T0 + TTL) == [UserOffline("alice", T0 + TTL, T0 + TTL)]
    assert tracker.presence("bob", T0 + TTL).status is Status.ONLINE  # still on r2
    assert tracker.connections_of("r1") == frozenset()


def test_renewed_leases_do_not_lapse_at_their_old_deadline(tracker: PresenceTracker) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    tracker.heartbeat("r1", {"c1": "alice"}, T0 + 10_000)
    assert tracker.expire(T0 + TTL + 1) == []
    assert tracker.expire(T0 + 10_000 + TTL) == [
        UserOffline("alice", T0 + 10_000 + TTL, T0 + 10_000 + TTL)
    ]


def test_next_deadline_says_when_to_expire(tracker: PresenceTracker) -> None:
    assert tracker.next_deadline() is None
    tracker.connection_opened("r1", "c1", "alice", T0)
    tracker.set_typing("conv", "alice", True, T0 + 1)
    assert tracker.next_deadline() == T0 + 1 + TYPING_TTL


def test_away_and_appear_offline(tracker: PresenceTracker) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    assert tracker.set_status("alice", Status.AWAY, T0 + 1) == [
        UserOnline("alice", Status.AWAY, T0 + 1)
    ]
    assert tracker.presence("alice", T0 + 2) == Presence("alice", Status.AWAY, T0 + 2)
    assert tracker.set_status("alice", Status.OFFLINE, T0 + 3) == [
        UserOffline("alice", T0 + 3, T0 + 3)
    ]
    # Connected but invisible: new connections do not reveal them.
    assert tracker.connection_opened("r2", "c2", "alice", T0 + 4) == []
    assert tracker.presence("alice", T0 + 5) == Presence("alice", Status.OFFLINE, T0 + 3)
    assert tracker.set_status("alice", Status.ONLINE, T0 + 6) == [
        UserOnline("alice", Status.ONLINE, T0 + 6)
    ]


def test_the_chosen_status_outlives_connections(tracker: PresenceTracker) -> None:
    tracker.set_status("alice", Status.AWAY, T0)
    tracker.connection_opened("r1", "c1", "alice", T0 + 1)
    tracker.set_status("alice", Status.OFFLINE, T0 + 2)
    tracker.connection_closed("r1", "c1", T0 + 3)
    assert tracker.connection_opened("r1", "c2", "alice", T0 + 4) == []


def test_set_status_online_leases_an_api_connection(tracker: PresenceTracker) -> None:
    assert tracker.set_status("bot", Status.ONLINE, T0) == [UserOnline("bot", Status.ONLINE, T0)]
    assert tracker.set_status("bot", Status.ONLINE, T0 + 10_000) == []  # renews the lease
    assert tracker.expire(T0 + TTL + 1) == []
    assert tracker.expire(T0 + 10_000 + TTL) == [
        UserOffline("bot", T0 + 10_000 + TTL, T0 + 10_000 + TTL)
    ]


def test_choosing_unknown_is_refused(tracker: PresenceTracker) -> None:
    with pytest.raises(ValueError, match="cannot choose"):
        tracker.set_status("alice", Status.UNKNOWN, T0)


def test_last_seen_never_moves_back(tracker: PresenceTracker) -> None:
    tracker.connection_opened("r1", "c1", "alice", T0)
    tracker.connection_closed("r1", "c1", T0 + 50_000)
    tracker.connection_opened("r1", "c2", "alice", T0 + 60_000)
    # Lapses with deadline T0+75_000 > 50_000: moves forward.
    assert tracker.expire(T0 + 80_000) == [UserOffline("alice", T0 + 75_000, T0 + 80_000)]


def test_typing_starts_once_refreshes_silently_and_stops_once(tracker: PresenceTracker) -> None:
    assert tracker.set_typing("conv", "alice", True, T0) == [
        TypingStarted("conv", "alice", T0 + TYPING_TTL, T0)
    ]
    assert tracker.set_typing("conv", "alice", True, T0 + 3_000) == []
    assert tracker.typing("conv", T0 + 4_000) == [Typing("alice", T0 + 3_000 + TYPING_TTL)]
    assert tracker.set_typing("conv", "alice", False, T0 + 5_000) == [
        TypingStopped("conv", "alice", T0 + 5_000)
    ]
    assert tracker.set_typing("conv", "alice", False, T0 + 5_001) == []
    assert tracker.typing("conv", T0 + 5_002) == []
    assert tracker.expire(T0 + 60_000) == []  # the stale deadlines do nothing


def test_typing_lapses_a_few_seconds_after_the_last_refresh(tracker: PresenceTracker) -> None:
    tracker.set_typing("conv", "alice", True, T0)
    tracker.set_typing("conv", "alice", True, T0 + 2_000)
    tracker.set_typing("conv", "bob", True, T0 + 2_500)
    assert tracker.expire(T0 + TYPING_TTL) == []  # the first refresh's deadline is stale
    # Reads filter exactly at the deadline, before any sweep.
    assert tracker.typing("conv", T0 + 2_000 + TYPING_TTL) == [
        Typing("bob", T0 + 2_500 + TYPING_TTL)
    ]
    assert tracker.expire(T0 + 2_600 + TYPING_TTL) == [
        TypingStopped("conv", "alice", T0 + 2_600 + TYPING_TTL),
        TypingStopped("conv", "bob", T0 + 2_600 + TYPING_TTL),
    ]
    assert tracker.statistics().typing == 0


def test_typing_refreshed_after_lapse_but_before_the_sweep_is_one_indicator(
    tracker: PresenceTracker,
) -> None:
    tracker.set_typing("conv", "alice", True, T0)
    assert tracker.set_typing("conv", "alice", True, T0 + TYPING_TTL + 10) == []
    assert tracker.expire(T0 + TYPING_TTL + 20) == []


def test_typing_is_per_conversation(tracker: PresenceTracker) -> None:
    tracker.set_typing("c1", "alice", True, T0)
    tracker.set_typing("c2", "alice", True, T0)
    tracker.set_typing("c1", "alice", False, T0 + 1)
    assert tracker.typing("c2", T0 + 2) == [Typing("alice", T0 + TYPING_TTL)]
    assert tracker.typing("c1", T0 + 2) == []


def test_ttls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PresenceTracker(lease_ttl_ms=0, typing_ttl_ms=1)
