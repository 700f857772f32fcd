"""What the chat does with the marketplace's events: one handler per consumed type, each a
thin decoding of the (schema-validated) event data into a use case.

Every handler is idempotent on its own, whatever the consumer's deduplication did: an order
card has the order id as its client id, product versions and block decision times order
replays (see docs/events.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.model import Money, OrderCard, ProductCard
from cellchat.events import catalog
from cellchat.events.envelope import CloudEvent

Handler = Callable[[CloudEvent], Awaitable[None]]


def _money(value: Mapping[str, Any] | None) -> Money | None:
    if not value:
        return None
    return Money(int(value["amount_minor"]), str(value["currency"]))


def marketplace_handlers(app: ChatApp) -> dict[str, Handler]:
    async def order_created(event: CloudEvent) -> None:
        d = event.data
        card = OrderCard(str(d["order_id"]), str(d["status"]), _money(d.get("total")),
                         int(d["item_count"]))
        await app.link_order(card.order_id, str(d["buyer_id"]), str(d["seller_id"]), card)

    async def product_updated(event: CloudEvent) -> None:
        d = event.data
        product = ProductCard(str(d["product_id"]), str(d["title"]), _money(d.get("price")),
                              str(d.get("image_url") or ""), bool(d["available"]))
        await app.update_product(product, int(d["version"]))

    def block(blocked: bool) -> Handler:
        async def handle(event: CloudEvent) -> None:
            d = event.data
            await app.set_block(str(d["blocker_id"]), str(d["blocked_id"]), blocked=blocked,
                                at_ms=int(d["at_ms"]))

        return handle

    return {
        catalog.ORDER_CREATED: order_created,
        catalog.PRODUCT_UPDATED: product_updated,
        catalog.USER_BLOCKED: block(True),
        catalog.USER_UNBLOCKED: block(False),
    }
