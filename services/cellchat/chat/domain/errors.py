"""One root error for the whole chat service, grouped by cause.

Transports translate these into gRPC statuses or WebSocket error frames; nothing below the
transports knows about either. Storage adapters translate driver errors into `StoreUnavailable`
and `StoreTimeout` at their boundary (`raise ... from exc`).
"""

from __future__ import annotations


class ChatError(Exception):
    """Root of every error the service reports to a client."""

    code = "internal"


class InvalidArgument(ChatError):
    """A request field is malformed or out of range; `field` names it."""

    code = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(ChatError):
    """The thing does not exist, or the caller may not know that it exists."""

    code = "not_found"


class PermissionDenied(ChatError):
    """The caller is a participant but this action is not theirs to take."""

    code = "permission_denied"


class FailedPrecondition(ChatError):
    """The request is well-formed but the current state forbids it (edit window passed...)."""

    code = "failed_precondition"


class LimitExceeded(ChatError):
    """A quota or size limit would be exceeded (participants, rate)."""

    code = "resource_exhausted"


class Unauthenticated(ChatError):
    """The credentials are missing or invalid."""

    code = "unauthenticated"


class Blocked(ChatError):
    """One party blocked the other; the conversation stays readable but not writable."""

    code = "permission_denied"


class StoreError(ChatError):
    """The storage backend failed; the request may be retried."""

    code = "unavailable"


class StoreUnavailable(StoreError):
    """The database cannot be reached right now."""


class StoreTimeout(StoreError):
    """The database did not answer in time; the write may or may not have happened."""


class Contention(StoreError):
    """Too many concurrent writers on one conversation; retrying later will succeed."""
