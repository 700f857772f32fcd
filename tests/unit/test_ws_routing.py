"""Broker routing: a few recipients go to their own subjects, a crowd goes once to the cell
subject with its recipients listed, and a replica hands it only to the recipients it serves.
Large groups' conversation frames stay small."""

from __future__ import annotations

from collections.abc import Sequence

import jsonschema
import pytest

from cellchat.chat.domain.model import Context, Conversation, ConversationKind, Participant, Role
from cellchat.chat.realtime import frames, schemas
from cellchat.chat.realtime.broker import CROWD, Envelope, InProcessBroker, cell_subject
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.chat.realtime.hub import Hub, Outbox
from cellchat.chat.realtime.wire import frame_payload, text_frame
from cellchat.ops import Metrics


def test_envelope_with_recipients_round_trips_any_user_id() -> None:
    odd = ("plain", "with space", "new\nline", "quote\"d", "ünï")
    envelope = Envelope('{"type":"x"}\nsecond line', "cid-1", 3, 12.5, odd)
    again = Envelope.from_wire(envelope.to_wire())
    assert again == envelope
    assert again.recipients == odd
    assert again.wire == text_frame(envelope.frame.encode())


@pytest.mark.parametrize("wire", [
    "1.0 2\n{}",                      # a field short
    "1.0 2 cid extra\n{}",            # an unknown marker
    "1.0 2 cid *\n{\"a\": 1}\n{}",    # recipients not a list
    "1.0 2 cid *\n[1, 2]\n{}",        # recipients not strings
    "1.0 2 cid *\nnot json\n{}",
])
def test_a_malformed_envelope_is_refused(wire: str) -> None:
    with pytest.raises(ValueError, match="malformed envelope"):
        Envelope.from_wire(wire)


class RecordingBroker(InProcessBroker):
    """The in-process broker, remembering which subjects each publish addressed."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub, standing=(hub.cell_subject,))
        self.published: list[tuple[list[str], Envelope]] = []

    async def publish(self, subjects: Sequence[str], envelope: Envelope) -> None:
        self.published.append((list(subjects), envelope))
        await super().publish(subjects, envelope)


def _connect(hub: Hub, user: str, metrics: Metrics) -> Outbox:
    closes: list[object] = []
    outbox = Outbox(f"conn-{user}", user, 16, lambda code, reason: closes.append(code), metrics)
    outbox.gate.release()  # live from now on, as after a `subscribe`
    return outbox


async def _received(outbox: Outbox) -> list[str]:
    """What is queued for the connection's writer."""
    if not outbox.statistics().queued:
        return []
    return [frame_payload(frame).decode() for frame in await outbox.take()]


async def test_a_crowd_is_published_once_and_reaches_only_connected_recipients() -> None:
    metrics = Metrics()
    hub = Hub("cell-a", metrics)
    broker = RecordingBroker(hub)
    hub.broker = broker
    here = [_connect(hub, f"u{i}", metrics) for i in range(CROWD)]
    bystander = _connect(hub, "bystander", metrics)
    for outbox in (*here, bystander):
        await hub.attach(outbox)
    events = RealtimeEvents(hub, broker, metrics)
    recipients = [f"u{i}" for i in range(CROWD)] + ["elsewhere-1", "elsewhere-2"]

    await events.publish_typing("c1", "u0", recipients, started=True, ttl_ms=1000)

    (subjects, envelope), = broker.published
    assert subjects == [cell_subject("cell-a")]
    assert set(envelope.recipients) == set(recipients) - {"u0"}
    assert await _received(here[0]) == []  # the typist is not a recipient
    for outbox in here[1:]:
        assert await _received(outbox) == [envelope.frame]
    assert await _received(bystander) == []


async def test_a_few_recipients_go_to_their_own_subjects() -> None:
    metrics = Metrics()
    hub = Hub("cell-a", metrics)
    broker = RecordingBroker(hub)
    hub.broker = broker
    buyer = _connect(hub, "buyer", metrics)
    await hub.attach(buyer)
    events = RealtimeEvents(hub, broker, metrics)

    await events.publish_presence("seller", ["buyer", "seller", "away-user"], online=True,
                                  last_seen_ms=5)

    (subjects, envelope), = broker.published
    assert subjects == [hub.subject("buyer"), hub.subject("away-user")]
    assert envelope.recipients == ()
    assert await _received(buyer) == [envelope.frame]


async def test_a_crowd_envelope_for_another_cell_subject_is_ignored() -> None:
    metrics = Metrics()
    hub = Hub("cell-a", metrics)
    hub.broker = InProcessBroker(hub)
    member = _connect(hub, "m", metrics)
    await hub.attach(member)
    hub.deliver(cell_subject("cell-b"), Envelope("{}", recipients=("m",)))
    assert await _received(member) == []
    hub.deliver(hub.cell_subject, Envelope("{}", recipients=("m",)))
    assert await _received(member) == ["{}"]


def _group(n: int) -> tuple[Conversation, list[Participant]]:
    conversation = Conversation("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", ConversationKind.GROUP,
                                "admin", 1, "big", Context("", ""))
    people = [Participant(f"user-{i}", Role.MEMBER, 1) for i in range(n)]
    return conversation, people


@pytest.mark.parametrize("n", [1, frames.FRAME_PARTICIPANTS_MAX])
def test_conversation_frames_list_participants_up_to_the_cap(n: int) -> None:
    conversation, people = _group(n)
    body = frames.conversation_body(conversation, people)
    assert [p["user_id"] for p in body["participants"]] == [p.user_id for p in people]
    assert body["participant_count"] == n
    assert body["participants_complete"] is True


def test_a_large_groups_frames_do_not_list_everyone() -> None:
    import json

    from cellchat.chat.domain import events
    from cellchat.chat.realtime.fanout import envelope_for

    conversation, people = _group(frames.FRAME_PARTICIPANTS_MAX + 1)
    kind, envelope, recipients = envelope_for(
        events.ConversationCreated(conversation, tuple(people)))
    frame = json.loads(envelope.frame)
    jsonschema.validate(frame, schemas.SERVER[kind])
    assert frame["conversation"]["participants"] == []
    assert frame["conversation"]["participant_count"] == len(people)
    assert frame["conversation"]["participants_complete"] is False
    assert frame["added"] == []
    assert len(recipients) == len(people)
    assert len(envelope.frame) < 1000

    update = events.ParticipantsChanged(conversation, tuple(people), added=("user-3",),
                                        removed=("gone",))
    kind, envelope, recipients = envelope_for(update)
    frame = json.loads(envelope.frame)
    jsonschema.validate(frame, schemas.SERVER[kind])
    assert frame["added"] == ["user-3"]
    assert frame["removed"] == ["gone"]
    assert "gone" in recipients
