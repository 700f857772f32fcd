"""A ChatCell's spec as frozen values, checked once.

The CRD's schema (crds/chatcell.yaml) rejects malformed specs at the API server. This module
parses what got through into typed values and repeats the checks that matter here, because an
operator may run against an older CRD and because a few rules need more than one field. A spec
that fails here is reported on the status as ``InvalidSpec`` and never retried: retrying
cannot fix it, only an edit can.

Defaults live in the CRD (the API server fills them in, so ``kubectl get -o yaml`` shows them);
the same values are repeated here only so that a spec built by hand in a test parses too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

DEFAULT_IMAGE = "cellchat:0.1.0"
CELL_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,48}[a-z0-9])?$")
_DC_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252}[A-Za-z0-9])?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
JWT_ALGORITHMS = (
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512",
    "EdDSA",
)
MAX_REPLICAS = 100
MAX_REPLICATION_FACTOR = 10


class InvalidSpec(ValueError):
    """The spec cannot be reconciled as written; the message names the field."""


@attrs.frozen
class SecretKeyRef:
    name: str
    key: str


@attrs.frozen
class Resources:
    requests: Mapping[str, str] = attrs.field(factory=dict)
    limits: Mapping[str, str] = attrs.field(factory=dict)

    def as_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


@attrs.frozen
class Workload:
    """One of the cell's two Deployments (chat or presence)."""

    replicas: int
    image: str
    resources: Resources


@attrs.frozen
class Replication:
    strategy: str  # "SimpleStrategy" or "NetworkTopologyStrategy"
    factor: int = 0  # SimpleStrategy only
    data_centers: Mapping[str, int] = attrs.field(factory=dict)  # NetworkTopologyStrategy only

    def as_cql_map(self) -> dict[str, Any]:
        """The replication map CREATE/ALTER KEYSPACE takes."""
        if self.strategy == "SimpleStrategy":
            return {"class": "SimpleStrategy", "replication_factor": self.factor}
        return {"class": "NetworkTopologyStrategy", **dict(sorted(self.data_centers.items()))}


@attrs.frozen
class Credentials:
    """A Secret holding the ScyllaDB user name and password under two keys."""

    secret: str
    username_key: str = "username"
    password_key: str = "password"


@attrs.frozen
class Scylla:
    contact_points: tuple[str, ...]
    port: int
    replication: Replication
    credentials: Credentials | None = None


@attrs.frozen
class Redis:
    url: str = ""
    secret: SecretKeyRef | None = None


@attrs.frozen
class Jwt:
    algorithms: tuple[str, ...]
    issuer: str
    audience: str
    secret: SecretKeyRef  # HMAC secret (HS*) or PEM public key (the others)
    signing: SecretKeyRef | None = None  # PEM private key for service tokens (public-key only)

    @property
    def symmetric(self) -> bool:
        return self.algorithms[0].startswith("HS")


@attrs.frozen
class CellSpec:
    name: str  # metadata.name of the ChatCell; prefixes every object it owns
    namespace: str
    cell_id: str
    image_pull_policy: str
    chat: Workload
    presence: Workload
    scylla: Scylla
    redis: Redis
    jwt: Jwt
    keyspace_policy: str  # "Retain" or "Delete"
    image_pull_secrets: tuple[str, ...] = ()

    @property
    def keyspace(self) -> str:
        # Same rule as cellchat_schema.keyspace_for_cell, kept here so this module stays pure.
        return "chat_" + self.cell_id.replace("-", "_")


def _get(raw: Mapping[str, Any], key: str, path: str, kind: type, default: Any = None) -> Any:
    value = raw.get(key, default)
    if value is None:
        raise InvalidSpec(f"{path}.{key} is required")
    if kind is int and isinstance(value, bool):
        raise InvalidSpec(f"{path}.{key} must be an integer")
    if not isinstance(value, kind):
        raise InvalidSpec(f"{path}.{key} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "a list"}
    return names.get(kind, kind.__name__)


def _mapping(raw: Mapping[str, Any], key: str, path: str,
             required: bool = False) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise InvalidSpec(f"{path}.{key} is required")
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{path}.{key} must be an object")
    return value


def _secret_ref(raw: Mapping[str, Any], path: str, default_key: str) -> SecretKeyRef:
    name = _get(raw, "name", path, str)
    key = _get(raw, "key", path, str, default_key)
    if not _SECRET_NAME.match(name):
        raise InvalidSpec(f"{path}.name {name!r} is not a valid Secret name")
    if not _SECRET_KEY.match(key):
        raise InvalidSpec(f"{path}.key {key!r} is not a valid Secret key")
    return SecretKeyRef(name, key)


def _quantities(raw: Mapping[str, Any], path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for resource, quantity in raw.items():
        if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
            raise InvalidSpec(f"{path}.{resource} must be a quantity such as 500m or 1Gi")
        out[str(resource)] = str(quantity)
    return out


def _workload(raw: Mapping[str, Any], path: str, image: str, default_replicas: int) -> Workload:
    replicas = _get(raw, "replicas", path, int, default_replicas)
    if not 0 <= replicas <= MAX_REPLICAS:
        raise InvalidSpec(f"{path}.replicas must be between 0 and {MAX_REPLICAS}")
    own_image = _get(raw, "image", path, str, image)
    if not own_image.strip():
        raise InvalidSpec(f"{path}.image must not be empty")
    res = _mapping(raw, "resources", path)
    resources = Resources(
        requests=_quantities(_mapping(res, "requests", f"{path}.resources"),
                             f"{path}.resources.requests"),
        limits=_quantities(_mapping(res, "limits", f"{path}.resources"),
                           f"{path}.resources.limits"),
    )
    return Workload(replicas, own_image, resources)


def _replication(raw: Mapping[str, Any], path: str) -> Replication:
    strategy = _get(raw, "strategy", path, str)
    if strategy == "SimpleStrategy":
        if raw.get("dataCenters"):
            raise InvalidSpec(f"{path}: SimpleStrategy takes replicationFactor, not dataCenters")
        factor = _get(raw, "replicationFactor", path, int)
        if not 1 <= factor <= MAX_REPLICATION_FACTOR:
            raise InvalidSpec(
                f"{path}.replicationFactor must be between 1 and {MAX_REPLICATION_FACTOR}"
            )
        return Replication(strategy, factor=factor)
    if strategy == "NetworkTopologyStrategy":
        if raw.get("replicationFactor") is not None:
            raise InvalidSpec(
                f"{path}: NetworkTopologyStrategy takes dataCenters, not replicationFactor"
            )
        dcs = _mapping(raw, "dataCenters", path)
        if not dcs:
            raise InvalidSpec(f"{path}.dataCenters must name at least one data centre")
        checked: dict[str, int] = {}
        for dc, factor in dcs.items():
            if not _DC_PATTERN.match(str(dc)):
                raise InvalidSpec(f"{path}.dataCenters: {dc!r} is not a data centre name")
            if isinstance(factor, bool) or not isinstance(factor, int):
                raise InvalidSpec(f"{path}.dataCenters.{dc} must be an integer")
            if not 1 <= factor <= MAX_REPLICATION_FACTOR:
                raise InvalidSpec(
                    f"{path}.dataCenters.{dc} must be between 1 and {MAX_REPLICATION_FACTOR}"
                )
            checked[str(dc)] = factor
        return Replication(strategy, data_centers=checked)
    raise InvalidSpec(
        f"{path}.strategy must be SimpleStrategy or NetworkTopologyStrategy, got {strategy!r}"
    )


def parse(spec: Mapping[str, Any], *, name: str, namespace: str) -> CellSpec:
    """Parse a ChatCell's spec (as stored, defaults applied); raise InvalidSpec."""
    if not NAME_PATTERN.match(name):
        raise InvalidSpec(
            f"metadata.name {name!r} must start with a letter, hold only lower-case letters, "
            "digits and '-', and be at most 50 characters (it prefixes the cell's Services)"
        )
    cell_id = _get(spec, "cellId", "spec", str)
    if not CELL_ID_PATTERN.match(cell_id):
        raise InvalidSpec(
            f"spec.cellId {cell_id!r} must be 1-40 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    image = _get(spec, "image", "spec", str, DEFAULT_IMAGE)
    pull_policy = _get(spec, "imagePullPolicy", "spec", str, "IfNotPresent")
    if pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise InvalidSpec("spec.imagePullPolicy must be Always, IfNotPresent or Never")
    pull_secrets = []
    for i, ref in enumerate(spec.get("imagePullSecrets") or []):
        if not isinstance(ref, Mapping):
            raise InvalidSpec(f"spec.imagePullSecrets[{i}] must be an object with a name")
        pull_secrets.append(_get(ref, "name", f"spec.imagePullSecrets[{i}]", str))

    scylla_raw = _mapping(spec, "scylla", "spec", required=True)
    points = _get(scylla_raw, "contactPoints", "spec.scylla", list)
    if not points:
        raise InvalidSpec("spec.scylla.contactPoints must name at least one host")
    for host in points:
        if not isinstance(host, str) or not _HOST_PATTERN.match(host):
            raise InvalidSpec(f"spec.scylla.contactPoints: {host!r} is not a host name or IP")
    port = _get(scylla_raw, "port", "spec.scylla", int, 9042)
    if not 1 <= port <= 65535:
        raise InvalidSpec("spec.scylla.port must be between 1 and 65535")
    creds_raw = scylla_raw.get("credentialsSecret")
    credentials = None
    if creds_raw is not None:
        path = "spec.scylla.credentialsSecret"
        if not isinstance(creds_raw, Mapping):
            raise InvalidSpec(f"{path} must be an object")
        username = _secret_ref({"name": creds_raw.get("name"),
                                "key": creds_raw.get("usernameKey", "username")}, path, "")
        password = _secret_ref({"name": creds_raw.get("name"),
                                "key": creds_raw.get("passwordKey", "password")}, path, "")
        credentials = Credentials(username.name, username.key, password.key)
    replication = _replication(
        _mapping(scylla_raw, "replication", "spec.scylla", required=True),
        "spec.scylla.replication",
    )

    redis_raw = _mapping(spec, "redis", "spec", required=True)
    redis_url = redis_raw.get("url") or ""
    redis_secret_raw = redis_raw.get("secretRef")
    if bool(redis_url) == (redis_secret_raw is not None):
        raise InvalidSpec("spec.redis: set exactly one of url or secretRef")
    if redis_url and not re.match(r"^(redis|rediss|unix)://", str(redis_url)):
        raise InvalidSpec("spec.redis.url must start with redis://, rediss:// or unix://")
    redis = Redis(
        url=str(redis_url),
        secret=(
            _secret_ref(redis_secret_raw, "spec.redis.secretRef", "url")
            if isinstance(redis_secret_raw, Mapping)
            else None
        ),
    )

    jwt_raw = _mapping(spec, "jwt", "spec", required=True)
    algorithms = tuple(_get(jwt_raw, "algorithms", "spec.jwt", list, ["HS256"]))
    if not algorithms:
        raise InvalidSpec("spec.jwt.algorithms must name at least one algorithm")
    for algorithm in algorithms:
        if algorithm not in JWT_ALGORITHMS:
            raise InvalidSpec(f"spec.jwt.algorithms: {algorithm!r} is not supported")
    hmac = [a for a in algorithms if a.startswith("HS")]
    if hmac and len(hmac) != len(algorithms):
        raise InvalidSpec(
            "spec.jwt.algorithms must not mix HMAC (HS*) and public-key algorithms: "
            "one key cannot safely serve both"
        )
    secret_raw = _mapping(jwt_raw, "secretRef", "spec.jwt", required=True)
    signing_raw = jwt_raw.get("signingSecretRef")
    jwt = Jwt(
        algorithms=algorithms,
        issuer=_get(jwt_raw, "issuer", "spec.jwt", str, "cellchat"),
        audience=_get(jwt_raw, "audience", "spec.jwt", str, "cellchat"),
        secret=_secret_ref(secret_raw, "spec.jwt.secretRef", "jwt"),
        signing=(
            _secret_ref(signing_raw, "spec.jwt.signingSecretRef", "signing-key")
            if isinstance(signing_raw, Mapping) else None
        ),
    )
    if jwt.symmetric == (jwt.signing is not None):
        raise InvalidSpec(
            "spec.jwt.signingSecretRef is required with public-key algorithms and not allowed "
            "with HMAC ones"
        )

    policy = _get(spec, "keyspacePolicy", "spec", str, "Retain")
    if policy not in ("Retain", "Delete"):
        raise InvalidSpec("spec.keyspacePolicy must be Retain or Delete")

    return CellSpec(
        name=name,
        namespace=namespace,
        cell_id=cell_id,
        image_pull_policy=pull_policy,
        image_pull_secrets=tuple(pull_secrets),
        chat=_workload(_mapping(spec, "chat", "spec"), "spec.chat", image, 2),
        presence=_workload(_mapping(spec, "presence", "spec"), "spec.presence", image, 1),
        scylla=Scylla(
            contact_points=tuple(points),
            port=port,
            replication=replication,
            credentials=credentials,
        ),
        redis=redis,
        jwt=jwt,
        keyspace_policy=policy,
    )
