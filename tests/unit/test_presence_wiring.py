"""How presence is wired into the chat, without processes: composable change sinks, the sink
that turns changes into frames (who gets them, what is skipped, what is dropped), the folded
presence settings, and the checks that stop a misconfigured replica or presence process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence

import pytest
import trio

from cellchat import cli
from cellchat.chat.app.directory import ChatDirectory
from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.model import Role
from cellchat.chat.realtime import frames
from cellchat.chat.realtime.presence_frames import PresenceAudience, PresenceFrames
from cellchat.chat.realtime.presence_link import replica_id_for
from cellchat.chat.storage.embedded import EmbeddedStore, open_embedded_store
from cellchat.presence.config import PresenceConfig
from cellchat.presence.model import (
    Change,
    Status,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
    check_replica_id,
)
from cellchat.presence.process import check_settings
from cellchat.presence.sinks import ChangeSinks
from cellchat.presence.tracker import PresenceTracker
from cellchat.settings import Settings, SettingsError, from_env

SECRET = "wiring-test-secret-0123456789abcdef0123"

# ---------------------------------------------------------------- composable sinks


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[Change]] = []
        self.fail = fail

    async def publish(self, changes: Sequence[Change]) -> None:
        self.batches.append(list(changes))
        if self.fail:
            raise RuntimeError("sink down")


async def test_change_sinks_forward_every_batch_and_isolate_failures() -> None:
    first, broken, last = Recording(), Recording(fail=True), Recording()
    sinks = ChangeSinks([first, broken])
    sinks.add(last)  # e.g. the event outbox
    batch = [UserOnline("alice", Status.ONLINE, 1)]
    await sinks.publish(batch)
    assert first.batches == broken.batches == last.batches == [batch]
    stats = sinks.statistics()
    assert (stats.sinks, stats.batches, stats.failures) == (3, 1, 1)
    assert sinks.sinks == (first, broken, last)


# ---------------------------------------------------------------- changes → frames


class RecordingEvents:
    """Stands in for RealtimeEvents: what would be published, to whom."""

    def __init__(self) -> None:
        self.presence: list[tuple[str, frozenset[str], bool, str, int]] = []
        self.typing: list[tuple[str, str, frozenset[str], bool]] = []

    async def publish_presence(self, user_id: str, recipients: Iterable[str], *, online: bool,
                               last_seen_ms: int, status: str | None = None) -> None:
        frames.encode_presence(user_id, online=online, last_seen_ms=last_seen_ms,
                               status=status)  # a valid frame
        self.presence.append((user_id, frozenset(recipients) - {user_id}, online,
                              status or "", last_seen_ms))

    async def publish_typing(self, conversation_id: str, user_id: str,
                             recipients: Iterable[str], *, started: bool, ttl_ms: int) -> None:
        self.typing.append((conversation_id, user_id,
                            frozenset(recipients) - {user_id}, started))


@pytest.fixture
async def store() -> AsyncIterator[EmbeddedStore]:
    async with open_embedded_store() as opened:
        yield opened


async def seed(store: EmbeddedStore) -> dict[str, str]:
    """alice-bob and alice-carol (direct), a group of alice, dave and erin, and frank alone
    with gina; then dave blocks alice."""
    app = ChatApp(store)
    ab, _ = await app.create_direct("alice", "bob", counterpart_role=Role.SELLER)
    ac, _ = await app.create_direct("alice", "carol", counterpart_role=Role.SELLER)
    group = await app.create_group("alice", "team", ["dave", "erin"])
    fg, _ = await app.create_direct("frank", "gina", counterpart_role=Role.SELLER)
    await store.set_block("dave", "alice", blocked=True, at_ms=1)
    return {"ab": ab.conversation.conversation_id, "ac": ac.conversation.conversation_id,
            "group": group.conversation.conversation_id,
            "fg": fg.conversation.conversation_id}


async def run_frames(frames_sink: PresenceFrames, changes: list[Change]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(frames_sink.run)
        await frames_sink.publish(changes)
        with trio.fail_after(5):
            await frames_sink.flushed()
        nursery.cancel_scope.cancel()


EVERYONE = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "nobody"]


async def test_the_audience_is_exactly_who_the_presence_api_shows_the_user_to(
        store: EmbeddedStore) -> None:
    await seed(store)
    audience = PresenceAudience(store)
    directory = ChatDirectory(store)
    for subject in EVERYONE:
        expected = {viewer for viewer in EVERYONE if viewer != subject
                    and subject in await directory.sharing_a_conversation(viewer, [subject])}
        assert await audience.of(subject) == expected, subject
    assert await audience.of("alice") == {"bob", "carol", "erin"}  # dave blocked her
    assert await audience.of("dave") == {"erin"}


async def test_users_in_many_conversations_are_bounded_to_the_most_recent(
        store: EmbeddedStore) -> None:
    class Ticking:
        now = 1_000

        def now_ms(self) -> int:
            self.now += 1_000
            return self.now

    app = ChatApp(store, clock=Ticking())
    for peer in ("p1", "p2", "p3"):
        await app.create_direct("seller", peer, counterpart_role=Role.BUYER)
    audience = PresenceAudience(store, max_conversations=2)
    assert len(await audience.conversations_of("seller")) == 2
    assert await audience.of("seller") == {"p2", "p3"}


async def test_presence_changes_become_frames_for_the_audience(store: EmbeddedStore) -> None:
    ids = await seed(store)
    events = RecordingEvents()
    sink = PresenceFrames(PresenceAudience(store), events)  # type: ignore[arg-type]
    await run_frames(sink, [
        UserOnline("alice", Status.ONLINE, 10),
        UserOnline("alice", Status.AWAY, 11),
        UserOffline("alice", 12, 13),
        TypingStarted(ids["group"], "erin", 20, 14),
        TypingStopped(ids["group"], "erin", 15),  # stopped by erin: the replica fanned it out
        TypingStopped(ids["group"], "erin", 16, lapsed=True),
        UserOnline("nobody", Status.ONLINE, 17),
    ])
    audience = frozenset({"bob", "carol", "erin"})
    assert events.presence == [
        ("alice", audience, True, "online", 10),
        ("alice", audience, True, "away", 11),
        ("alice", audience, False, "offline", 12),
        ("nobody", frozenset(), True, "online", 17),
    ]
    assert events.typing == [(ids["group"], "erin", frozenset({"alice", "dave"}), False)]
    stats = sink.statistics()
    assert (stats.presence_frames, stats.typing_frames, stats.skipped, stats.dropped,
            stats.failures, stats.queued) == (4, 1, 2, 0, 0, 0)


async def test_a_full_queue_drops_changes_instead_of_blocking_presence(
        store: EmbeddedStore) -> None:
    sink = PresenceFrames(PresenceAudience(store), RecordingEvents(),  # type: ignore[arg-type]
                          lanes=1, queue_size=2)
    with trio.fail_after(1):  # never waits, although nothing works the queue
        await sink.publish([UserOnline(f"u{i}", Status.ONLINE, i) for i in range(5)])
    assert (sink.statistics().queued, sink.statistics().dropped) == (2, 3)


async def test_a_store_failure_loses_that_frame_only(store: EmbeddedStore) -> None:
    events = RecordingEvents()

    class Failing(PresenceAudience):
        async def of(self, user_id: str) -> frozenset[str]:
            if user_id == "bad":
                raise OSError("store down")
            return await super().of(user_id)

    sink = PresenceFrames(Failing(store), events, lanes=1)  # type: ignore[arg-type]
    await run_frames(sink, [UserOnline("bad", Status.ONLINE, 1),
                            UserOnline("good", Status.ONLINE, 2)])
    assert [p[0] for p in events.presence] == ["good"]
    assert sink.statistics().failures == 1


def test_only_the_sweeper_marks_a_typing_stop_as_lapsed() -> None:
    tracker = PresenceTracker(lease_ttl_ms=1_000, typing_ttl_ms=1_000)
    tracker.set_typing("c", "alice", True, 0)
    [stopped] = tracker.set_typing("c", "alice", False, 10)
    assert isinstance(stopped, TypingStopped)
    assert not stopped.lapsed
    tracker.set_typing("c", "alice", True, 20)
    [lapsed] = tracker.expire(2_000)
    assert isinstance(lapsed, TypingStopped)
    assert lapsed.lapsed
    assert lapsed == TypingStopped("c", "alice", 2_000)  # same transition either way


def test_presence_frames_carry_a_status_that_agrees_with_online() -> None:
    assert json.loads(frames.encode_presence("bob", online=True, last_seen_ms=5)) == {
        "type": "presence", "user_id": "bob", "online": True, "status": "online",
        "last_seen_ms": 5}
    away = json.loads(frames.encode_presence("bob", online=True, last_seen_ms=5, status="away"))
    assert (away["online"], away["status"]) == (True, "away")
    with pytest.raises(ValueError, match="does not agree"):
        frames.encode_presence("bob", online=False, last_seen_ms=5, status="away")


# ---------------------------------------------------------------- settings


def env(**values: str) -> dict[str, str]:
    return {"JWT_SECRET": SECRET, **values}


PRODUCTION = {"SCYLLA_HOSTS": "10.0.0.1", "REDIS_URL": "redis://redis:6379/0"}


def test_presence_timing_is_one_setting_shared_with_the_replicas() -> None:
    settings = from_env(env(PRESENCE_TYPING_TTL_MS="4000", PRESENCE_LEASE_TTL_MS="9000",
                            PRESENCE_HEARTBEAT_INTERVAL_MS="3000"))
    assert settings.presence == PresenceConfig(lease_ttl_ms=9_000, heartbeat_interval_ms=3_000,
                                               typing_ttl_ms=4_000)
    assert settings.typing_ttl_s == 4.0  # what hello.typing_ttl_ms and typing frames say
    assert Settings().presence == PresenceConfig()
    with pytest.raises(SettingsError, match="PRESENCE_TYPING_TTL_MS"):
        from_env(env(TYPING_TTL_S="5"))
    with pytest.raises(SettingsError, match="at most half"):
        from_env(env(PRESENCE_LEASE_TTL_MS="4000", PRESENCE_HEARTBEAT_INTERVAL_MS="3000"))


def test_presence_addr_is_host_and_port_and_needs_the_shared_store_and_redis() -> None:
    assert from_env(env()).presence_target is None
    settings = from_env(env(PRESENCE_ADDR="presence.ns.svc:50061", **PRODUCTION))
    assert settings.presence_target == ("presence.ns.svc", 50061)
    assert from_env(env(PRESENCE_ADDR="[::1]:7", **PRODUCTION)).presence_target == ("::1", 7)
    for bad in ("presence", "presence:", ":50061", "presence:http", "presence:70000"):
        with pytest.raises(SettingsError, match="PRESENCE_ADDR must be host:port"):
            from_env(env(PRESENCE_ADDR=bad, **PRODUCTION))
    with pytest.raises(SettingsError, match="needs SCYLLA_HOSTS and REDIS_URL"):
        from_env(env(PRESENCE_ADDR="presence:50061"))
    with pytest.raises(SettingsError, match="needs SCYLLA_HOSTS and REDIS_URL"):
        from_env(env(PRESENCE_ADDR="presence:50061", SCYLLA_HOSTS="10.0.0.1"))


def test_presence_addr_with_public_key_tokens_needs_a_signing_key() -> None:
    public = {"JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----",
              "JWT_ALGORITHMS": "RS256", "PRESENCE_ADDR": "presence:50061", **PRODUCTION}
    with pytest.raises(SettingsError, match="JWT_SIGNING_KEY"):
        from_env(public)
    assert from_env({**public, "JWT_SIGNING_KEY": "pem"}).presence_target == ("presence", 50061)


def test_the_presence_process_refuses_to_start_without_the_chat_store_or_redis(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SettingsError, match="needs SCYLLA_HOSTS"):
        check_settings(from_env(env(REDIS_URL="redis://r")))
    with pytest.raises(SettingsError, match="needs REDIS_URL"):
        check_settings(from_env(env(SCYLLA_HOSTS="10.0.0.1")))
    check_settings(from_env(env(**PRODUCTION)))
    for name in ("SCYLLA_HOSTS", "REDIS_URL", "PRESENCE_ADDR", "TYPING_TTL_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    assert cli.main(["presence"]) == 2
    assert "cellchat: cellchat presence needs SCYLLA_HOSTS" in capsys.readouterr().err


def test_replica_ids_are_valid_and_per_process() -> None:
    replica = replica_id_for("chat-service")
    assert check_replica_id("replica_id", replica) == replica
    assert replica.startswith("chat-service-")
    assert replica_id_for("~chat\tservice").startswith("chat_service-")
    assert len(replica_id_for("x" * 300)) == 128
