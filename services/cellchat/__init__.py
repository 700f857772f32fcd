"""cellchat: a real-time chat service for a marketplace, run per cell.

Packages: `cellchat.chat` (conversations, messages, the gRPC and WebSocket transports),
`cellchat.presence` (online status and typing), and the shared parts beside them
(`settings`, `auth`, `grpcutil`). The schema and its runner live in `cellchat_schema` so the
operator can apply migrations without importing the services.
"""

__version__ = "0.1.0"
