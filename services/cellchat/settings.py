"""All settings of a cellchat process, read once from the environment and validated at start.

Names follow the seed (`SERVICE_NAME`, `CELL_ID`, `SCYLLA_HOSTS`); docs/operations.md lists
them all. With no `SCYLLA_HOSTS` the chat service runs on the embedded store, and with no
`REDIS_URL` on the in-process broker: one command gives a working chat. Production settings
(a database) demand a real JWT key instead of the development default.

Presence timing (`PRESENCE_*_MS`) is one `PresenceConfig` (cellchat/presence/config.py), read
here into `Settings.presence` so that the chat replicas and the presence service agree on it:
the typing TTL a replica announces to its clients is the one presence expires indicators with.
`PRESENCE_ADDR` (host:port) makes the chat replicas report to a separate `cellchat presence`
process; empty, `cellchat run` embeds the presence service.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from cellchat.auth import JwtSettings

if TYPE_CHECKING:
    from cellchat.presence.config import PresenceConfig

DEV_JWT_SECRET = "cellchat-development-secret-do-not-use-in-production"
_CELL_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _default_presence() -> PresenceConfig:
    # Imported here: cellchat.presence.config imports SettingsError from this module.
    from cellchat.presence.config import PresenceConfig

    return PresenceConfig()


@attrs.frozen
class Settings:
    service_name: str = "chat-service"
    cell_id: str = "local"
    scylla_hosts: tuple[str, ...] = ()
    scylla_port: int = 9042
    scylla_keyspace: str = ""
    scylla_username: str = ""
    scylla_password: str = attrs.field(default="", repr=False)
    scylla_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    migrate_on_start: bool = True
    embedded_db: str = ":memory:"
    redis_url: str = ""
    marketplace_stream: str = "marketplace.events"
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    ws_port: int = 8080
    ops_port: int = 9090
    presence_port: int = 50061
    presence_addr: str = ""
    jwt: JwtSettings = attrs.field(factory=lambda: JwtSettings(verify_key=DEV_JWT_SECRET))
    dev_jwt: bool = True
    ws_allowed_origins: tuple[str, ...] = ()
    ws_max_frame_bytes: int = 64 * 1024
    ws_rate_per_s: float = 20.0
    ws_burst: int = 40
    ws_idle_timeout_s: float = 60.0
    ws_queue_size: int = 256
    ws_replay_max: int = 1000
    ws_close_timeout_s: float = 5.0
    ws_flood_strikes: int = 10
    presence: PresenceConfig = attrs.field(factory=_default_presence)
    grace_s: float = 10.0
    edit_window_s: int = 900
    max_group_participants: int = 100

    @property
    def keyspace(self) -> str:
        return self.scylla_keyspace or "chat_" + self.cell_id.replace("-", "_")

    @property
    def uses_embedded_store(self) -> bool:
        return not self.scylla_hosts

    @property
    def typing_ttl_s(self) -> float:
        """`expires_in_ms` of typing frames: presence's typing TTL (PRESENCE_TYPING_TTL_MS)."""
        return self.presence.typing_ttl_ms / 1000

    @property
    def presence_target(self) -> tuple[str, int] | None:
        """(host, port) of the separate presence service, or None: presence is embedded."""
        if not self.presence_addr:
            return None
        return parse_address("PRESENCE_ADDR", self.presence_addr)


def parse_address(name: str, value: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6 literals) or a SettingsError naming `name`."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise SettingsError(f"{name} must be host:port, got {value!r}")
    return host, int(port)


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0,
         high: int = 2**31) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _secret(env: Mapping[str, str], name: str) -> str:
    """A secret from NAME, or from the file NAME_FILE points at (Kubernetes Secret mounts)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return ""


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    cell_id = env.get("CELL_ID", "local")
    if not _CELL_ID.match(cell_id):
        raise SettingsError(
            "CELL_ID must be 1-40 lower-case letters, digits or '-', starting and ending "
            f"with a letter or digit; got {cell_id!r}"
        )
    hosts = _list(env, "SCYLLA_HOSTS")
    algorithms = _list(env, "JWT_ALGORITHMS") or ("HS256",)
    verify_key = _secret(env, "JWT_SECRET") or _secret(env, "JWT_PUBLIC_KEY")
    dev_jwt = not verify_key
    if dev_jwt:
        if hosts and not _bool(env, "CELLCHAT_ALLOW_DEV_JWT", False):
            raise SettingsError(
                "JWT_SECRET or JWT_PUBLIC_KEY is required when SCYLLA_HOSTS is set "
                "(the development secret is only for the embedded default)"
            )
        verify_key = DEV_JWT_SECRET
    if env.get("TYPING_TTL_S"):
        raise SettingsError("TYPING_TTL_S was replaced by PRESENCE_TYPING_TTL_MS (milliseconds), "
                            "which the chat replicas and the presence service share")
    from cellchat.presence.config import from_env as presence_from_env

    presence = presence_from_env(env)
    presence_addr = env.get("PRESENCE_ADDR", "")
    if presence_addr:
        parse_address("PRESENCE_ADDR", presence_addr)
        if not hosts or not (env.get("REDIS_URL") or _secret(env, "REDIS_URL")):
            raise SettingsError(
                "PRESENCE_ADDR needs SCYLLA_HOSTS and REDIS_URL: the presence service reads "
                "conversations from the shared chat store and reaches this replica's clients "
                "through Redis (leave PRESENCE_ADDR empty to embed presence)"
            )
        if not any(a.startswith("HS") for a in algorithms) and not _secret(
                env, "JWT_SIGNING_KEY"):
            raise SettingsError(
                "PRESENCE_ADDR with public-key JWT_ALGORITHMS needs JWT_SIGNING_KEY (or "
                "JWT_SIGNING_KEY_FILE): the replica signs its own service token for presence"
            )
    try:
        jwt_settings = JwtSettings(
            algorithms=algorithms,
            verify_key=verify_key,
            signing_key=_secret(env, "JWT_SIGNING_KEY"),
            issuer=env.get("JWT_ISSUER", "cellchat"),
            audience=env.get("JWT_AUDIENCE", "cellchat"),
            leeway_s=_int(env, "JWT_LEEWAY_S", 30, 0, 600),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return Settings(
        service_name=env.get("SERVICE_NAME", "chat-service"),
        cell_id=cell_id,
        scylla_hosts=hosts,
        scylla_port=_int(env, "SCYLLA_PORT", 9042, 1, 65535),
        scylla_keyspace=env.get("SCYLLA_KEYSPACE", ""),
        scylla_username=env.get("SCYLLA_USERNAME", ""),
        scylla_password=_secret(env, "SCYLLA_PASSWORD"),
        scylla_replication=env.get(
            "SCYLLA_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        ),
        migrate_on_start=_bool(env, "MIGRATE_ON_START", True),
        embedded_db=env.get("EMBEDDED_DB", ":memory:"),
        redis_url=env.get("REDIS_URL", "") or _secret(env, "REDIS_URL"),
        marketplace_stream=env.get("MARKETPLACE_STREAM", "marketplace.events"),
        host=env.get("BIND_HOST", "127.0.0.1"),
        grpc_port=_int(env, "GRPC_PORT", 50051, 0, 65535),
        ws_port=_int(env, "WS_PORT", 8080, 0, 65535),
        ops_port=_int(env, "OPS_PORT", 9090, 0, 65535),
        presence_port=_int(env, "PRESENCE_PORT", 50061, 0, 65535),
        presence_addr=presence_addr,
        jwt=jwt_settings,
        dev_jwt=dev_jwt,
        ws_allowed_origins=_list(env, "WS_ALLOWED_ORIGINS"),
        ws_max_frame_bytes=_int(env, "WS_MAX_FRAME_BYTES", 64 * 1024, 256, 16 * 1024 * 1024),
        ws_rate_per_s=_float(env, "WS_RATE_PER_S", 20.0),
        ws_burst=_int(env, "WS_BURST", 40, 1, 100_000),
        ws_idle_timeout_s=_float(env, "WS_IDLE_TIMEOUT_S", 60.0),
        ws_queue_size=_int(env, "WS_QUEUE_SIZE", 256, 1, 1_000_000),
        ws_replay_max=_int(env, "WS_REPLAY_MAX", 1000, 0, 1_000_000),
        ws_close_timeout_s=_float(env, "WS_CLOSE_TIMEOUT_S", 5.0),
        ws_flood_strikes=_int(env, "WS_FLOOD_STRIKES", 10, 1, 1_000_000),
        presence=presence,
        grace_s=_float(env, "SHUTDOWN_GRACE_S", 10.0),
        edit_window_s=_int(env, "EDIT_WINDOW_S", 900, 0, 10**9),
        max_group_participants=_int(env, "MAX_GROUP_PARTICIPANTS", 100, 2, 100_000),
    )
