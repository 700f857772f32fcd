"""Transports: thin shells that decode a request, call a use case, encode the answer, map errors."""
