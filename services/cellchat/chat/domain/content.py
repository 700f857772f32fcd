"""Message content: validation of each kind's metadata, and its JSON form for storage.

The JSON form is the one both storage adapters keep in a text column, so there is exactly one
encoding of an attachment. Limits are documented in docs/api.md; `Limits` holds their values.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from cellchat.chat.domain.errors import InvalidArgument
from cellchat.chat.domain.model import (
    Attachment,
    File,
    Image,
    MessageKind,
    Money,
    OrderCard,
    ProductCard,
)


@attrs.frozen
class Limits:
    max_text_chars: int = 4000
    max_title_chars: int = 200
    max_id_chars: int = 128
    max_url_chars: int = 2048
    max_group_participants: int = 100
    max_page_size: int = 100
    max_file_bytes: int = 100 * 1024 * 1024
    edit_window_ms: int = 15 * 60 * 1000
    # Far beyond any conversation, and within what every store can address (the CQL store's
    # partition number is a 32-bit int of seq // bucket size).
    max_seq: int = 2**40


_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def _require_url(field: str, url: str, limits: Limits) -> None:
    if not url:
        raise InvalidArgument(field, "required")
    if len(url) > limits.max_url_chars:
        raise InvalidArgument(field, f"longer than {limits.max_url_chars} characters")
    if not url.startswith(("https://", "http://")):
        raise InvalidArgument(field, "must be an http(s) URL")


def _require_mime(field: str, mime: str, prefix: str = "") -> None:
    if not _MIME.match(mime):
        raise InvalidArgument(field, "not a MIME type")
    if prefix and not mime.startswith(prefix):
        raise InvalidArgument(field, f"must be {prefix}*")


def _require_id(field: str, value: str, limits: Limits) -> None:
    if not value or not value.strip():
        raise InvalidArgument(field, "required")
    if len(value) > limits.max_id_chars:
        raise InvalidArgument(field, f"longer than {limits.max_id_chars} characters")


def _check_money(field: str, money: Money | None) -> None:
    if money is None:
        return
    if money.amount_minor < 0:
        raise InvalidArgument(f"{field}.amount_minor", "must not be negative")
    if not _CURRENCY.match(money.currency):
        raise InvalidArgument(f"{field}.currency", "must be an ISO 4217 code like EUR")


def validate_text(field: str, text: str, limits: Limits, *, required: bool) -> str:
    if len(text) > limits.max_text_chars:
        raise InvalidArgument(field, f"longer than {limits.max_text_chars} characters")
    if required and not text.strip():
        raise InvalidArgument(field, "required for text messages")
    return text


_EXPECTED: dict[MessageKind, type | None] = {
    MessageKind.TEXT: None,
    MessageKind.IMAGE: Image,
    MessageKind.FILE: File,
    MessageKind.PRODUCT: ProductCard,
    MessageKind.ORDER: OrderCard,
}


def validate_content(
    kind: MessageKind, text: str, attachment: Attachment | None, limits: Limits, *,
    system: bool,
) -> None:
    """Raise `InvalidArgument` unless the kind, text and attachment fit together."""
    if kind is MessageKind.SYSTEM:
        if not system:
            raise InvalidArgument("kind", "system messages are written by the service only")
        validate_text("text", text, limits, required=False)
        return
    expected = _EXPECTED[kind]
    validate_text("text", text, limits, required=kind is MessageKind.TEXT)
    if expected is None:
        if attachment is not None:
            raise InvalidArgument("attachment", "text messages carry no attachment")
        return
    if attachment is None or not isinstance(attachment, expected):
        raise InvalidArgument(kind.value, f"{kind.value} messages need a {kind.value} attachment")
    _validate_attachment(attachment, limits)


def _validate_attachment(attachment: Attachment, limits: Limits) -> None:
    match attachment:
        case Image():
            _require_url("image.url", attachment.url, limits)
            _require_mime("image.mime", attachment.mime, "image/")
            if not 0 < attachment.size <= limits.max_file_bytes:
                raise InvalidArgument("image.size", f"must be 1..{limits.max_file_bytes} bytes")
            if attachment.width <= 0 or attachment.height <= 0:
                raise InvalidArgument("image.width", "width and height must be positive")
        case File():
            _require_url("file.url", attachment.url, limits)
            _require_id("file.name", attachment.name, limits)
            _require_mime("file.mime", attachment.mime)
            if not 0 < attachment.size <= limits.max_file_bytes:
                raise InvalidArgument("file.size", f"must be 1..{limits.max_file_bytes} bytes")
        case ProductCard():
            _require_id("product.product_id", attachment.product_id, limits)
            if len(attachment.title) > limits.max_title_chars:
                raise InvalidArgument("product.title", "too long")
            if attachment.image_url:
                _require_url("product.image_url", attachment.image_url, limits)
            _check_money("product.price", attachment.price)
        case OrderCard():
            _require_id("order.order_id", attachment.order_id, limits)
            if attachment.item_count < 0:
                raise InvalidArgument("order.item_count", "must not be negative")
            _check_money("order.total", attachment.total)


# ---------------------------------------------------------------- JSON form


def _money_dict(money: Money | None) -> dict[str, Any] | None:
    if money is None:
        return None
    return {"amount_minor": money.amount_minor, "currency": money.currency}


def _money(value: dict[str, Any] | None) -> Money | None:
    return None if value is None else Money(int(value["amount_minor"]), str(value["currency"]))


def attachment_to_json(attachment: Attachment | None) -> str:
    if attachment is None:
        return ""
    match attachment:
        case Image():
            body: dict[str, Any] = {"type": "image", **attrs.asdict(attachment)}
        case File():
            body = {"type": "file", **attrs.asdict(attachment)}
        case ProductCard():
            body = {"type": "product", **attrs.asdict(attachment)}
            body["price"] = _money_dict(attachment.price)
        case OrderCard():
            body = {"type": "order", **attrs.asdict(attachment)}
            body["total"] = _money_dict(attachment.total)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def attachment_from_json(text: str | None) -> Attachment | None:
    if not text:
        return None
    body = json.loads(text)
    kind = body.pop("type")
    if kind == "image":
        return Image(**body)
    if kind == "file":
        return File(**body)
    if kind == "product":
        body["price"] = _money(body.get("price"))
        return ProductCard(**body)
    if kind == "order":
        body["total"] = _money(body.get("total"))
        return OrderCard(**body)
    raise ValueError(f"unknown attachment type {kind!r}")
