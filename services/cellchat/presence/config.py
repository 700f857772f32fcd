"""Presence timing and limits: one frozen object, validated at start.

The defaults are the documented bounds (docs/presence.md):

* a connection's lease lasts `lease_ttl_ms` (15 s) after its last report; replicas report every
  `heartbeat_interval_ms` (5 s), so two lost heartbeats in a row are tolerated;
* every presence instance sweeps lapsed leases and indicators every `sweep_interval_ms` (1 s);
* so the users of a replica that dies go offline at most lease_ttl + sweep_interval (16 s)
  after its last heartbeat, and a typing indicator stops at most typing_ttl + sweep_interval
  (7 s) after its last refresh (reads filter lapsed ones exactly at typing_ttl).

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

    def __attrs_post_init__(self) -> None:
        for name in ("lease_ttl_ms", "heartbeat_interval_ms", "typing_ttl_ms",
                     "sweep_interval_ms", "sweep_batch", "max_batch", "retain_ms"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"PresenceConfig.{name} must be positive")
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


def _ms(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer (milliseconds), got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value


def from_env(env: Mapping[str, str] | None = None) -> PresenceConfig:
    env = os.environ if env is None else env
    d = PresenceConfig()
    return PresenceConfig(
        lease_ttl_ms=_ms(env, "PRESENCE_LEASE_TTL_MS", d.lease_ttl_ms),
        heartbeat_interval_ms=_ms(env, "PRESENCE_HEARTBEAT_INTERVAL_MS", d.heartbeat_interval_ms),
        typing_ttl_ms=_ms(env, "PRESENCE_TYPING_TTL_MS", d.typing_ttl_ms),
        sweep_interval_ms=_ms(env, "PRESENCE_SWEEP_INTERVAL_MS", d.sweep_interval_ms),
    )
