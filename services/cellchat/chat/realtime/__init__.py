"""The chat's real-time path: the WebSocket protocol and the fan-out behind it.

    frames / schemas   sans-I/O codec: text <-> typed frames, one JSON Schema per frame
    ratelimit          token bucket and flood verdicts (time passed in)
    resume             resume without gaps: hold live frames while replaying, drop duplicates
    broker             the broker port, the event envelope and the in-process adapter
    redis_broker       the Redis Pub/Sub adapter (coredis)
    hub                this replica's connections: one bounded outbox and writer each
    fanout             the EventSink: encode each event once, publish it once
    websocket          the trio-websocket handler: handshake checks, one session per socket

The protocol itself is documented in docs/websocket.md.
"""
