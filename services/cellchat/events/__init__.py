"""Marketplace integration: CloudEvents published through an outbox and a relay, consumed through
a Redis consumer group. docs/events.md is the contract; each module's docstring holds its rules.

- `envelope`: the CloudEvents 1.0 JSON envelope (encode, decode, validation).
- `catalog`: event type names, their JSON Schemas (`schemas/`), stream and group names.
- `published`: builders of the events a cell publishes, with stable ids.
- `outbox`: the outbox and change-checker ports, `Intent`, `Check`, the in-memory outbox.
- `relay`: moves intents whose change exists from the outbox to the stream.
- `streams`: events in Redis stream entries; the Redis publisher.
- `consumer`: the consumer-group reader with dedupe, retries and dead letters.
- `dedupe`: the `ProcessedIds` port and its Redis and in-memory adapters.
"""
