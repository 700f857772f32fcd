"""The chat service: conversations, messages, horizons; domain → app → storage/transports."""
