"""Operations: Prometheus metrics and the ops HTTP port (/metrics, /healthz, /readyz).

Rules:
- Each server owns its `Metrics` (its own registry), so several servers can run in one process
  (tests) without clashing; label values are bounded sets (frame types, codes, operations).
- /healthz answers 200 while the process serves at all (liveness). /readyz answers 200 only
  when every readiness check passes (store reachable, broker connected, not draining) and 503
  with the failing checks otherwise: a load balancer stops sending new clients meanwhile.
- Metrics touched once per delivered frame (`ws_frames_out`, `fanout_seconds`: thousands of
  times per message in a large group) are `LeanCounter` / `LeanHistogram`: plain attribute
  arithmetic instead of prometheus_client's locked values (a locked `Histogram.observe` cost
  ~15 µs, more than queueing the frame). They are updated and rendered on the Trio thread only,
  which is what lets them go without a lock; the exposition is the same as the stock types'.
- The HTTP server is deliberately tiny (h11, one request per connection, GET only): it is for
  probes and scrapers on a private port, not for the public.
docs/operations.md lists every metric and endpoint.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import h11
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0)

ReadinessCheck = Callable[[], Awaitable[bool] | bool]

#: A conversation id no conversation has: reading its last seq is a cheap database round trip.
_PROBE_CONVERSATION = "00000000-0000-0000-0000-000000000000"


def store_and_broker_checks(store: Any, broker: Any, metrics: Metrics
                            ) -> dict[str, ReadinessCheck]:
    """The readiness checks every process with a chat store and a broker has."""

    async def store_ready() -> bool:
        await store.get_last_seq(_PROBE_CONVERSATION)
        return True

    def broker_ready() -> bool:
        metrics.broker_up.set(1 if broker.ready else 0)
        return bool(broker.ready)

    return {"store": store_ready, "broker": broker_ready}


class LeanCounter:
    """An unlabelled counter without a lock (see the module rules); `inc` counts in bulk."""

    __slots__ = ("_created", "_doc", "_name", "value")

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._doc = documentation
        self._created = time.time()
        self.value = 0.0
        registry.register(self)

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, value=self.value,
                                  created=self._created)


class LeanHistogram:
    """An unlabelled histogram without a lock (see the module rules): one `bisect` per
    observation into per-bucket counts; cumulated only when rendered."""

    __slots__ = ("_bounds", "_counts", "_created", "_doc", "_name", "sum")

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("histogram buckets must be strictly increasing")
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self._name = name
        self._doc = documentation
        self._bounds = bounds
        self._counts = [0] * len(bounds)
        self._created = time.time()
        self.sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        # bisect_left: a value equal to a bound falls in that bound's bucket (le = <=).
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self.sum += amount

    @property
    def count(self) -> int:
        return sum(self._counts)

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self._bounds, self._counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), float(cumulative)))
        yield HistogramMetricFamily(self._name, self._doc, buckets=buckets,
                                    sum_value=self.sum)
        yield GaugeMetricFamily(self._name + "_created", self._doc, value=self._created)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ws_connections = Gauge(
            "cellchat_ws_connections", "Open WebSocket connections on this replica",
            registry=r)
        self.ws_handshakes = Counter(
            "cellchat_ws_handshakes", "WebSocket handshakes by result", ["result"], registry=r)
        self.ws_frames_in = Counter(
            "cellchat_ws_frames_in", "Client frames received, by type", ["type"], registry=r)
        self.ws_frames_out = LeanCounter(
            "cellchat_ws_frames_out", "Frames written to client sockets", registry=r)
        self.ws_closes = Counter(
            "cellchat_ws_closes", "Connections closed by the server, by close code", ["code"],
            registry=r)
        self.ws_queue_drops = Counter(
            "cellchat_ws_queue_drops",
            "Frames refused because a connection's outgoing queue was full", registry=r)
        self.ws_slow_consumer_closes = Counter(
            "cellchat_ws_slow_consumer_closes", "Connections closed as slow consumers (4009)",
            registry=r)
        self.ws_errors = Counter(
            "cellchat_ws_errors", "Error frames sent, by code", ["code"], registry=r)
        self.fanout_seconds = LeanHistogram(
            "cellchat_fanout_latency_seconds",
            "From publishing an event to queueing it for a local connection (across replicas "
            "through the broker)", buckets=_LATENCY_BUCKETS, registry=r)
        self.events_published = Counter(
            "cellchat_events_published", "Events published to the broker, by frame type",
            ["type"], registry=r)
        self.broker_seconds = Histogram(
            "cellchat_broker_latency_seconds", "Broker calls, by operation", ["op"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.broker_errors = Counter(
            "cellchat_broker_errors", "Failed broker calls, by operation", ["op"], registry=r)
        self.broker_up = Gauge(
            "cellchat_broker_up", "1 while the broker connection is up", registry=r)
        self.store_seconds = Histogram(
            "cellchat_store_latency_seconds", "Storage calls, by operation", ["op"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.store_errors = Counter(
            "cellchat_store_errors", "Failed storage calls, by operation", ["op"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class InstrumentedStore:
    """A `ChatStore` that times every call of the store it wraps."""

    def __init__(self, store: Any, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name.startswith("_") or not callable(target):
            return target
        seconds = self._metrics.store_seconds.labels(name)
        errors = self._metrics.store_errors.labels(name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - started)

        # Found here once per method: later calls find it in the instance, skipping
        # __getattr__ and the label lookups (they were ~2% of a send's CPU).
        self.__dict__[name] = timed
        return timed


# ---------------------------------------------------------------- HTTP


async def _check_all(checks: Mapping[str, ReadinessCheck]) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for name, check in checks.items():
        try:
            with trio.fail_after(2):
                value = check()
                if not isinstance(value, bool):
                    value = await value
        except Exception:  # a failing check is simply "not ready"
            value = False
        results[name] = bool(value)
    return results


async def _respond(metrics: Metrics, checks: Mapping[str, ReadinessCheck],
                   method: bytes, target: bytes) -> tuple[int, bytes, bytes]:
    path = target.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return 405, b"text/plain", b"method not allowed\n"
    if path == b"/metrics":
        return 200, CONTENT_TYPE_LATEST.encode(), metrics.render()
    if path == b"/healthz":
        return 200, b"text/plain", b"ok\n"
    if path == b"/readyz":
        results = await _check_all(checks)
        ready = all(results.values())
        body = json.dumps({"ready": ready, "checks": results}).encode() + b"\n"
        return (200 if ready else 503), b"application/json", body
    return 404, b"text/plain", b"not found\n"


async def _handle(stream: trio.SocketStream, metrics: Metrics,
                  checks: Mapping[str, ReadinessCheck]) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        with trio.move_on_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(16384)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    status, content_type, body = await _respond(
                        metrics, checks, event.method, event.target)
                    headers = [(b"content-type", content_type),
                               (b"content-length", str(len(body)).encode()),
                               (b"connection", b"close")]
                    out = conn.send(h11.Response(status_code=status, headers=headers))
                    if event.method != b"HEAD":
                        out += conn.send(h11.Data(data=body))
                    out += conn.send(h11.EndOfMessage())
                    await stream.send_all(out)
                return
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def serve_ops(
    host: str, port: int, metrics: Metrics, checks: Mapping[str, ReadinessCheck], *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /metrics, /healthz and /readyz; reports the bound port once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = int(listeners[0].socket.getsockname()[1])

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, metrics, checks)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
