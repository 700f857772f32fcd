"""The hub's per-user bookkeeping (chat/realtime/hub.py): subscribe and unsubscribe of one user
stay serialized although the lock that serializes them exists only while one is under way."""

from __future__ import annotations

import trio
import trio.testing

from cellchat.chat.realtime.broker import Envelope, InProcessBroker
from cellchat.chat.realtime.hub import Hub, Outbox
from cellchat.chat.realtime.wire import text_frame
from cellchat.ops import Metrics


class GatedBroker(InProcessBroker):
    """Unsubscribes wait until the test lets them through."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.let_through = trio.Event()
        self.calls: list[str] = []

    async def subscribe(self, subject: str) -> None:
        self.calls.append("subscribe")
        await super().subscribe(subject)

    async def unsubscribe(self, subject: str) -> None:
        self.calls.append("unsubscribe")
        await self.let_through.wait()
        await super().unsubscribe(subject)


def _outbox(conn: str, metrics: Metrics) -> Outbox:
    outbox = Outbox(conn, "bob", 16, lambda code, reason: None, metrics)
    outbox.gate.release()
    return outbox


async def test_a_reconnect_during_the_unsubscribe_ends_subscribed() -> None:
    metrics = Metrics()
    hub = Hub("cell-a", metrics)
    broker = hub.broker = GatedBroker(hub)
    first = _outbox("c1", metrics)
    await hub.attach(first)
    second = _outbox("c2", metrics)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.detach, first)
            await trio.testing.wait_all_tasks_blocked()  # unsubscribing, holding the lock
            nursery.start_soon(hub.attach, second)
            await trio.testing.wait_all_tasks_blocked()
            assert broker.calls == ["subscribe", "unsubscribe"]  # the attach waits its turn
            broker.let_through.set()
    assert broker.calls == ["subscribe", "unsubscribe", "subscribe"]
    assert hub.connections_of("bob") == 1
    hub.deliver(hub.subject("bob"), Envelope("{}"))
    assert await second.take() == [text_frame(b"{}")]


async def test_a_connected_user_keeps_no_lock_while_idle() -> None:
    metrics = Metrics()
    hub = Hub("cell-a", metrics)
    hub.broker = InProcessBroker(hub)
    outboxes = [_outbox(f"c{i}", metrics) for i in range(2)]
    for outbox in outboxes:
        await hub.attach(outbox)
    assert hub._users["bob"].lock is None
    await hub.detach(outboxes[0])
    assert hub._users["bob"].lock is None
    assert hub.connections_of("bob") == 1
    await hub.detach(outboxes[1])
    assert "bob" not in hub._users
