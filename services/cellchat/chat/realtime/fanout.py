"""The real-time `EventSink`: each chat event becomes one frame, published once.

Rules:
- An event is encoded once (one frame text) and handed to the broker once: addressed to the
  subjects of its recipients, or, for a crowd (`broker.CROWD` recipients or more), to the cell
  subject with the recipients listed; replicas pass that text to their sockets unchanged.
- `publish` is called after the change is stored, so it must not fail the use case: a broker
  error is counted and logged, and the clients close the gap by resuming (their next
  `subscribe` replays from storage). It never waits longer than `timeout_s`.
- Typing is not a stored event; `publish_typing` addresses the frame to the conversation's
  other participants only (the caller checked the typist is one of them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import attrs
import trio

from cellchat.chat.domain import events
from cellchat.chat.realtime import frames
from cellchat.chat.realtime.broker import CROWD, Broker, BrokerUnavailable, Envelope
from cellchat.chat.realtime.hub import Hub
from cellchat.ops import Metrics

log = logging.getLogger(__name__)


def envelope_for(event: events.ChatEvent) -> tuple[str, Envelope, tuple[str, ...]]:
    """The frame type, the envelope and the recipients of one chat event."""
    match event:
        case events.MessageCreated(message=message, recipients=recipients):
            text = frames.encode_message("message.created", message)
            return ("message.created",
                    Envelope.now(text, message.conversation_id, message.seq), recipients)
        case events.MessageEdited(message=message, recipients=recipients):
            text = frames.encode_message("message.edited", message)
            return "message.edited", Envelope.now(text, message.conversation_id), recipients
        case events.MessageDeleted(message=message, recipients=recipients):
            text = frames.encode_message("message.deleted", message)
            return "message.deleted", Envelope.now(text, message.conversation_id), recipients
        case events.HorizonsAdvanced():
            text = frames.encode_status(event.conversation_id, event.user_id, event.read_seq,
                                        event.delivered_seq)
            return "status", Envelope.now(text, event.conversation_id), event.recipients
        case events.ConversationCreated(conversation=conversation, participants=participants):
            listed = len(participants) <= frames.FRAME_PARTICIPANTS_MAX
            text = frames.encode_conversation(
                "conversation.created", conversation, participants,
                added=[p.user_id for p in participants] if listed else [])
            return ("conversation.created", Envelope.now(text, conversation.conversation_id),
                    tuple(p.user_id for p in participants))
        case events.ParticipantsChanged(conversation=conversation, participants=participants):
            text = frames.encode_conversation(
                "conversation.updated", conversation, participants,
                added=event.added, removed=event.removed)
            users = [p.user_id for p in participants]
            users.extend(u for u in event.removed if u not in users)
            return ("conversation.updated", Envelope.now(text, conversation.conversation_id),
                    tuple(users))
        case events.ProductCardsUpdated(product=product, version=version):
            text = frames.encode_product_updated(product, version)
            return "product.updated", Envelope.now(text), event.recipients
        case events.BlockChanged(blocker_id=blocker, blocked_id=blocked):
            text = frames.encode_block_changed(blocker, blocked, blocked=event.blocked)
            return "block.changed", Envelope.now(text), event.recipients
    raise TypeError(f"not a chat event: {type(event).__name__}")


class RealtimeEvents:
    """Implements `EventSink` for the chat app."""

    def __init__(self, hub: Hub, broker: Broker, metrics: Metrics, *,
                 timeout_s: float = 2.0) -> None:
        self._hub = hub
        self._broker = broker
        self._metrics = metrics
        self._timeout_s = timeout_s

    async def publish(self, event: events.ChatEvent) -> None:
        kind, envelope, recipients = envelope_for(event)
        await self._send(kind, envelope, recipients)

    async def publish_typing(self, conversation_id: str, user_id: str, recipients: Iterable[str],
                             *, started: bool, ttl_ms: int) -> None:
        text = frames.encode_typing(conversation_id, user_id, started=started,
                                    expires_in_ms=ttl_ms)
        others = [u for u in recipients if u != user_id]
        await self._send("typing", Envelope.now(text, conversation_id), others)

    async def publish_presence(self, user_id: str, recipients: Iterable[str], *, online: bool,
                               last_seen_ms: int, status: str | None = None) -> None:
        text = frames.encode_presence(user_id, online=online, last_seen_ms=last_seen_ms,
                                      status=status)
        await self._send("presence", Envelope.now(text), [u for u in recipients if u != user_id])

    async def _send(self, kind: str, envelope: Envelope, recipients: Iterable[str]) -> None:
        users = tuple(dict.fromkeys(recipients))
        if not users:
            return
        if len(users) >= CROWD:
            subjects = [self._hub.cell_subject]
            envelope = attrs.evolve(envelope, recipients=users)
        else:
            subjects = [self._hub.subject(u) for u in users]
        started = time.perf_counter()
        try:
            with trio.fail_after(self._timeout_s):
                await self._broker.publish(subjects, envelope)
        except (BrokerUnavailable, trio.TooSlowError) as exc:
            self._metrics.broker_errors.labels("publish").inc()
            log.warning("event not published (%s); clients resume from storage",
                        type(exc).__name__, extra={"conversation_id": envelope.conversation_id})
            return
        finally:
            self._metrics.broker_seconds.labels("publish").observe(
                time.perf_counter() - started)
        self._metrics.events_published.labels(kind).inc()
