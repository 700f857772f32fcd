"""Presence state in Redis (coredis), shared by every presence instance of a cell.

The rules are the tracker's (tracker.py); here each mutation is one Lua script, so a transition
is decided atomically however many presence instances share the keys, and its change is returned
to exactly the instance that caused it. Times come from the calling instance (`now_ms`, Unix
epoch ms): instances' clocks are assumed NTP-close (skew is small against second-scale leases).

Keys, all under one hash tag so a script's keys live in one Redis Cluster slot (`{ns}` below is
`{cellchat:<cell>:presence}`; ids are joined with the ASCII unit separator, which ids never hold):

    {ns}:leases          ZSET  "replica\\x1fconnection" → lease deadline (ms)
    {ns}:conn            HASH  "replica\\x1fconnection" → user id
    {ns}:replica:<r>     SET   connection ids of replica r            (expires 2 x lease TTL)
    {ns}:user:<u>:conns  SET   "replica\\x1fconnection" of user u       (expires 2 x lease TTL)
    {ns}:user:<u>        HASH  chosen, visible, seen                    (expires after retain_ms)
    {ns}:typing:<c>      ZSET  user id → indicator deadline           (expires 2 x typing TTL)
    {ns}:typing_due      ZSET  "conversation\\x1fuser" → deadline  (the sweeper's index)

The expiring keys only age out data no presence instance is left to clean up: while any instance
runs, its sweeper (`expire`) closes lapsed leases and stops lapsed indicators, emitting their
changes. Every live lease renews its sets' expiry, so a set never expires under a live lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions

from cellchat.chat.domain.errors import StoreTimeout, StoreUnavailable
from cellchat.presence.config import PresenceConfig
from cellchat.presence.model import (
    Change,
    Presence,
    Status,
    Typing,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)

# KEYS: leases, conn, typing_due.  ARGV: namespace, now, lease ttl, retain, then the script's own.
_PRELUDE = r"""
local NS = ARGV[1]
local NOW = tonumber(ARGV[2])
local TTL = tonumber(ARGV[3])
local RETAIN = tonumber(ARGV[4])
local LEASES, CONN, TYPING_DUE = KEYS[1], KEYS[2], KEYS[3]
local SEP = '\31'
local API_REPLICA = '~api'
local out = {}

local function user_key(u) return NS .. ':user:' .. u end
local function conns_key(u) return NS .. ':user:' .. u .. ':conns' end
local function replica_key(r) return NS .. ':replica:' .. r end
local function typing_key(c) return NS .. ':typing:' .. c end

local function split(m)
  local at = string.find(m, SEP, 1, true)
  return string.sub(m, 1, at - 1), string.sub(m, at + 1)
end

-- Emit the change, if any, between what others saw (visible) and what they should see now.
local function settle(u, seen)
  local key = user_key(u)
  local state = redis.call('HMGET', key, 'chosen', 'visible', 'seen')
  local chosen = state[1] or 'online'
  local visible = state[2] or 'offline'
  local effective = 'offline'
  if redis.call('SCARD', conns_key(u)) > 0 then effective = chosen end
  if effective ~= visible then
    if effective == 'offline' then
      local last = tonumber(state[3] or '0')
      if seen > last then last = seen end
      redis.call('HSET', key, 'visible', 'offline', 'seen', last)
      out[#out + 1] = {'offline', u, '', last}
    else
      redis.call('HSET', key, 'visible', effective)
      out[#out + 1] = {effective, u, '', 0}
    end
  end
  redis.call('PEXPIRE', key, RETAIN)
end

local function close(r, c, seen)
  local m = r .. SEP .. c
  redis.call('ZREM', LEASES, m)
  local u = redis.call('HGET', CONN, m)
  if not u then return end
  redis.call('HDEL', CONN, m)
  redis.call('SREM', replica_key(r), c)
  redis.call('SREM', conns_key(u), m)
  settle(u, seen)
end

local function open(r, c, u)
  local m = r .. SEP .. c
  local known = redis.call('HGET', CONN, m)
  if known and known ~= u then
    close(r, c, NOW)
    known = false
  end
  redis.call('ZADD', LEASES, NOW + TTL, m)
  if not known then
    redis.call('HSET', CONN, m, u)
    redis.call('SADD', replica_key(r), c)
    redis.call('SADD', conns_key(u), m)
  end
  redis.call('PEXPIRE', conns_key(u), 2 * TTL)
  redis.call('PEXPIRE', replica_key(r), 2 * TTL)
  if not known then settle(u, NOW) end
end
"""

_OPENED = _PRELUDE + r"""
open(ARGV[5], ARGV[6], ARGV[7])
return out
"""

_CLOSED = _PRELUDE + r"""
close(ARGV[5], ARGV[6], NOW)
return out
"""

# ARGV[5]: replica; ARGV[6], ARGV[7], ...: connection id, user id pairs (the complete set).
_HEARTBEAT = _PRELUDE + r"""
local r = ARGV[5]
local listed = {}
for i = 6, #ARGV, 2 do listed[ARGV[i]] = true end
local known = redis.call('SMEMBERS', replica_key(r))
table.sort(known)
for _, c in ipairs(known) do
  if not listed[c] then close(r, c, NOW) end
end
for i = 6, #ARGV, 2 do open(r, ARGV[i], ARGV[i + 1]) end
return out
"""

_SET_STATUS = _PRELUDE + r"""
local u, chosen = ARGV[5], ARGV[6]
redis.call('HSET', user_key(u), 'chosen', chosen)
if chosen == 'offline' then close(API_REPLICA, u, NOW) else open(API_REPLICA, u, u) end
settle(u, NOW)
return out
"""

# ARGV[5]: conversation, ARGV[6]: user, ARGV[7]: '1' to start/refresh, '0' to stop,
# ARGV[8]: typing TTL. The due index is the truth about whether an indicator exists.
_SET_TYPING = _PRELUDE + r"""
local c, u, ttl = ARGV[5], ARGV[6], tonumber(ARGV[8])
local m = c .. SEP .. u
local previous = redis.call('ZSCORE', TYPING_DUE, m)
if ARGV[7] == '1' then
  local deadline = NOW + ttl
  redis.call('ZADD', typing_key(c), deadline, u)
  redis.call('PEXPIRE', typing_key(c), 2 * ttl)
  redis.call('ZADD', TYPING_DUE, deadline, m)
  if not previous then out[#out + 1] = {'typing', u, c, deadline} end
elseif previous then
  redis.call('ZREM', typing_key(c), u)
  redis.call('ZREM', TYPING_DUE, m)
  out[#out + 1] = {'stopped', u, c, 0}
end
return out
"""

# ARGV[5]: batch size. Returns {leases closed, indicators stopped, changes}; a full batch of
# either means "call again".
_EXPIRE = _PRELUDE + r"""
local batch = tonumber(ARGV[5])
local lapsed = redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, batch)
for i = 1, #lapsed, 2 do
  local r, c = split(lapsed[i])
  close(r, c, tonumber(lapsed[i + 1]))
end
local due = redis.call('ZRANGEBYSCORE', TYPING_DUE, '-inf', NOW, 'LIMIT', 0, batch)
for _, m in ipairs(due) do
  local c, u = split(m)
  redis.call('ZREM', TYPING_DUE, m)
  redis.call('ZREM', typing_key(c), u)
  out[#out + 1] = {'stopped', u, c, 1}
end
return {#lapsed / 2, #due, out}
"""

# ARGV[5], ...: user ids. Returns {visible, seen} per user.
_PRESENCES = _PRELUDE + r"""
local answers = {}
for i = 5, #ARGV do
  local state = redis.call('HMGET', user_key(ARGV[i]), 'visible', 'seen')
  answers[#answers + 1] = {state[1] or 'offline', tonumber(state[2] or '0')}
end
return answers
"""

_STATUS_NAMES = {"online": Status.ONLINE, "away": Status.AWAY, "offline": Status.OFFLINE}


def namespace_for(cell_id: str) -> str:
    """The hash-tagged key prefix of a cell's presence state."""
    return "{cellchat:" + cell_id + ":presence}"


class RedisPresenceStore:
    def __init__(
        self, client: coredis.Redis[str], *, namespace: str, config: PresenceConfig
    ) -> None:
        self._client = client
        self._ns = namespace
        self._config = config
        self._keys = [f"{namespace}:leases", f"{namespace}:conn", f"{namespace}:typing_due"]
        scripts = {}
        for name, source in (
            ("opened", _OPENED),
            ("closed", _CLOSED),
            ("heartbeat", _HEARTBEAT),
            ("set_status", _SET_STATUS),
            ("set_typing", _SET_TYPING),
            ("expire", _EXPIRE),
            ("presences", _PRESENCES),
        ):
            scripts[name] = client.register_script(source)
        self._scripts = scripts

    async def _run(self, script: str, now_ms: int, *args: str | int) -> Any:
        common: list[str | int] = [self._ns, now_ms, self._config.lease_ttl_ms,
                                   self._config.retain_ms]
        return await _translated(
            lambda: self._scripts[script](keys=self._keys, args=[*common, *args])
        )

    async def _changes(self, script: str, now_ms: int, *args: str | int) -> list[Change]:
        return _decode_changes(await self._run(script, now_ms, *args), now_ms)

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str, now_ms: int
    ) -> list[Change]:
        return await self._changes("opened", now_ms, replica_id, connection_id, user_id)

    async def connection_closed(
        self, replica_id: str, connection_id: str, now_ms: int
    ) -> list[Change]:
        return await self._changes("closed", now_ms, replica_id, connection_id)

    async def heartbeat(
        self, replica_id: str, connections: Mapping[str, str], now_ms: int
    ) -> list[Change]:
        pairs: list[str | int] = []
        for connection_id, user_id in connections.items():
            pairs += (connection_id, user_id)
        return await self._changes("heartbeat", now_ms, replica_id, *pairs)

    async def set_status(self, user_id: str, status: Status, now_ms: int) -> list[Change]:
        if status not in (Status.ONLINE, Status.AWAY, Status.OFFLINE):
            raise ValueError(f"cannot choose {status}")
        return await self._changes("set_status", now_ms, user_id, status.value)

    async def set_typing(
        self, conversation_id: str, user_id: str, typing: bool, now_ms: int
    ) -> list[Change]:
        return await self._changes(
            "set_typing", now_ms, conversation_id, user_id, "1" if typing else "0",
            self._config.typing_ttl_ms,
        )

    async def expire(self, now_ms: int) -> list[Change]:
        batch = self._config.sweep_batch
        changes: list[Change] = []
        while True:
            leases, indicators, raw = await self._run("expire", now_ms, batch)
            changes += _decode_changes(raw, now_ms)
            if int(leases) < batch and int(indicators) < batch:
                return changes

    async def presences(self, user_ids: Sequence[str], now_ms: int) -> list[Presence]:
        if not user_ids:
            return []
        rows = await self._run("presences", now_ms, *user_ids)
        answers = []
        for user_id, (visible, seen) in zip(user_ids, rows, strict=True):
            status = _STATUS_NAMES[visible]
            if status is Status.OFFLINE:
                answers.append(Presence(user_id, status, int(seen)))
            else:
                answers.append(Presence(user_id, status, now_ms))
        return answers

    async def typing(self, conversation_id: str, now_ms: int) -> list[Typing]:
        key = f"{self._ns}:typing:{conversation_id}"
        # Deadlines are whole ms, and one that is now has lapsed: live ones are >= now + 1.
        rows = await _translated(
            lambda: self._client.zrange(
                key, now_ms + 1, "+inf", sortby=coredis.PureToken.BYSCORE, withscores=True
            )
        )
        return sorted((Typing(member, int(score)) for member, score in rows),
                      key=lambda t: t.user_id)


async def _translated(call: Callable[[], Any]) -> Any:
    """Run one Redis request; driver failures become the service's store errors."""
    try:
        return await call()
    except TimeoutError as exc:
        raise StoreTimeout("presence store (Redis) timed out") from exc
    except (coredis.exceptions.ConnectionError, OSError) as exc:
        raise StoreUnavailable("presence store (Redis) is unreachable") from exc
    except coredis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"presence store (Redis) failed: {type(exc).__name__}") from exc


def _decode_changes(raw: Sequence[Sequence[Any]], now_ms: int) -> list[Change]:
    changes: list[Change] = []
    for kind, user_id, conversation_id, value in raw:
        value = int(value)
        if kind == "offline":
            changes.append(UserOffline(user_id, value, now_ms))
        elif kind == "typing":
            changes.append(TypingStarted(conversation_id, user_id, value, now_ms))
        elif kind == "stopped":
            # value 1: lapsed (the sweeper), 0: stopped by the user
            changes.append(TypingStopped(conversation_id, user_id, now_ms, lapsed=value == 1))
        else:
            changes.append(UserOnline(user_id, _STATUS_NAMES[kind], now_ms))
    return changes


@asynccontextmanager
async def open_redis_presence_store(
    url: str, *, namespace: str, config: PresenceConfig
) -> AsyncIterator[RedisPresenceStore]:
    """A store on its own coredis client, open for the block's duration."""
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
        except (coredis.exceptions.ConnectionError, OSError) as exc:
            raise StoreUnavailable("presence store (Redis) is unreachable") from exc
        yield RedisPresenceStore(client, namespace=namespace, config=config)
