"""The presence service: who is online, who is typing, with server-side expiry.

model (values, changes) → tracker (sans-I/O rules, time passed in) → ports (store, visibility,
change sink) → service (use cases) → transport (purerpc) / client (what chat replicas use);
server.py is the composition root. docs/presence.md describes the API and the timing bounds.
"""
