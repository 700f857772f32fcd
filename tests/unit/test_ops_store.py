"""InstrumentedStore: every store call timed and its failures counted, by method."""

from __future__ import annotations

import pytest

from cellchat.chat.domain.errors import StoreUnavailable
from cellchat.ops import InstrumentedStore, Metrics


class _Store:
    limit = 3

    async def get_thing(self, key: str) -> str:
        return key.upper()

    async def broken(self) -> None:
        raise StoreUnavailable("down")


def _sample(metrics: Metrics, name: str, method: str) -> float:
    value = metrics.registry.get_sample_value(name, {"op": method})
    return 0.0 if value is None else value


async def test_calls_are_timed_and_failures_counted_per_method() -> None:
    metrics = Metrics()
    store = InstrumentedStore(_Store(), metrics)
    assert await store.get_thing("a") == "A"
    assert await store.get_thing("b") == "B"
    assert store.get_thing is store.get_thing  # wrapped once, then found directly
    with pytest.raises(StoreUnavailable):
        await store.broken()
    assert store.limit == 3
    assert _sample(metrics, "cellchat_store_latency_seconds_count", "get_thing") == 2
    assert _sample(metrics, "cellchat_store_latency_seconds_count", "broken") == 1
    assert _sample(metrics, "cellchat_store_errors_total", "broken") == 1
    assert _sample(metrics, "cellchat_store_errors_total", "get_thing") == 0
