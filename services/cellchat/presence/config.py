"""Presence timing and limits: one frozen object, validated at start.

The defaults are the documented bounds (docs/presence.md):

* a connection's lease lasts `lease_ttl_ms` (15 s) after its last report; replicas report every
  `heartbeat_interval_ms` (5 s), so two lost heartbeats in a row are tolerated;
* every presence instance sweeps lapsed leases and indicators every `sweep_interval_ms` (1 s);
* so the users of a replica that dies go offline at most lease_ttl + sweep_interval (16 s)
  after its last heartbeat, and a typing indicator stops at most typing_ttl + sweep_interval
  (7 s) after its last refresh (reads filter lapsed ones exactly at typing_ttl).

The frames sink's limits live here too, so that every process pushing presence frames (chat
replicas, `cellchat presence`) applies the same ones: conversations larger than
`live_group_limit` participants (100) push no presence frames, and an audience is computed from
participant lists at most `audience_cache_ms` (1 s) old.

Read from PRESENCE_* variables by `from_env`; the tests shorten them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from cellchat.settings import SettingsError


@attrs.frozen
class PresenceConfig:
    lease_ttl_ms: int = 15_000
    heartbeat_interval_ms: int = 5_000
    typing_ttl_ms: int = 6_000
    sweep_interval_ms: int = 1_000
    #: Lapsed leases or indicators handled per sweep step (one Lua call in Redis).
    sweep_batch: int = 500
    #: Users per GetOnlineStatus call.
    max_batch: int = 100
    #: How long Redis keeps a user's last_seen after their last change.
    retain_ms: int = 30 * 24 * 3600 * 1000
    #: Conversations with more participants than this do not push presence frames to their
    #: members (who ask `GetOnlineStatus`); direct conversations always do. See
    #: docs/presence.md, "Audience".
    live_group_limit: int = 100
    #: How long the frames sink reuses a conversation's participant list (0: never). Bounds how
    #: stale a frame's audience may be; never used for the API's answers.
    audience_cache_ms: int = 1_000

    def __attrs_post_init__(self) -> None:
        for name in ("lease_ttl_ms", "heartbeat_interval_ms", "typing_ttl_ms",
                     "sweep_interval_ms", "sweep_batch", "max_batch", "retain_ms"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"PresenceConfig.{name} must be positive")
        if self.live_group_limit < 2:
            raise SettingsError("PRESENCE_LIVE_GROUP_LIMIT must be at least 2 (a direct "
                                "conversation's two participants always see each other)")
        if self.audience_cache_ms < 0:
            raise SettingsError("PRESENCE_AUDIENCE_CACHE_MS must be 0 (no cache) or more")
        if self.heartbeat_interval_ms * 2 > self.lease_ttl_ms:
            raise SettingsError(
                "PRESENCE_HEARTBEAT_INTERVAL_MS must be at most half of PRESENCE_LEASE_TTL_MS, "
                "or one late heartbeat would take users offline"
            )

    @property
    def offline_bound_ms(self) -> int:
        """Longest time from a dead replica's last heartbeat to its users' UserOffline."""
        return self.lease_ttl_ms + self.sweep_interval_ms

    @property
    def typing_bound_ms(self) -> int:
        """Longest time from a typing indicator's last refresh to its TypingStopped."""
        return self.typing_ttl_ms + self.sweep_interval_ms


def _setting(env: Mapping[str, str], name: str, default: int, *, low: int = 1,
             unit: str = "milliseconds") -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer ({unit}), got {raw!r}") from None
    if value < low:
        raise SettingsError(f"{name} must be positive" if low == 1
                            else f"{name} must be at least {low}")
    return value


def from_env(env: Mapping[str, str] | None = None) -> PresenceConfig:
    env = os.environ if env is None else env
    d = PresenceConfig()
    return PresenceConfig(
        lease_ttl_ms=_setting(env, "PRESENCE_LEASE_TTL_MS", d.lease_ttl_ms),
        heartbeat_interval_ms=_setting(env, "PRESENCE_HEARTBEAT_INTERVAL_MS",
                                       d.heartbeat_interval_ms),
        typing_ttl_ms=_setting(env, "PRESENCE_TYPING_TTL_MS", d.typing_ttl_ms),
        sweep_interval_ms=_setting(env, "PRESENCE_SWEEP_INTERVAL_MS", d.sweep_interval_ms),
        live_group_limit=_setting(env, "PRESENCE_LIVE_GROUP_LIMIT", d.live_group_limit, low=2,
                                  unit="participants"),
        audience_cache_ms=_setting(env, "PRESENCE_AUDIENCE_CACHE_MS", d.audience_cache_ms,
                                   low=0),
    )
