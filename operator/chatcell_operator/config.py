"""The operator's own settings: one frozen object from the command line and the environment.

Command-line flags win over the environment, which wins over the defaults. Validated once at
start-up with an error that names the setting.

=========================  =========================  ==========================================
flag                       environment                meaning
=========================  =========================  ==========================================
``--namespace`` (repeat)   ``WATCH_NAMESPACE``        namespaces to watch (comma-separated env);
                                                      required: the operator is namespaced
``--drift-interval``       ``CHATCELL_DRIFT_INTERVAL``  seconds between drift checks (60)
``--liveness``             ``CHATCELL_LIVENESS``      kopf's liveness endpoint
                                                      (``http://0.0.0.0:8080/healthz``; "" = off)
``--verbose``              ``CHATCELL_VERBOSE``       debug-level logs
=========================  =========================  ==========================================
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence

import attrs

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ConfigError(ValueError):
    pass


@attrs.frozen
class OperatorConfig:
    namespaces: tuple[str, ...]
    drift_interval_s: float = 60.0
    liveness: str = "http://0.0.0.0:8080/healthz"
    verbose: bool = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatcell-operator",
        description="Reconcile ChatCells (cellchat.io/v1alpha1) into running chat cells.",
    )
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="namespace to watch (repeat for several)")
    parser.add_argument("--drift-interval", type=float, default=None,
                        help="seconds between drift checks")
    parser.add_argument("--liveness", default=None, help="liveness endpoint URL, '' for none")
    parser.add_argument("--verbose", "-v", action="store_true", default=None)
    return parser


def from_args(argv: Sequence[str] | None = None,
              env: Mapping[str, str] | None = None) -> OperatorConfig:
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    namespaces = tuple(args.namespace) or tuple(
        ns.strip() for ns in env.get("WATCH_NAMESPACE", "").split(",") if ns.strip()
    )
    if not namespaces:
        raise ConfigError("set --namespace or WATCH_NAMESPACE: the operator is namespaced")
    for ns in namespaces:
        if not _NAMESPACE.match(ns):
            raise ConfigError(f"{ns!r} is not a namespace name")
    interval_raw = (
        args.drift_interval
        if args.drift_interval is not None
        else env.get("CHATCELL_DRIFT_INTERVAL", "60")
    )
    try:
        interval = float(interval_raw)
    except ValueError:
        raise ConfigError(f"CHATCELL_DRIFT_INTERVAL must be a number, got {interval_raw!r}") \
            from None
    if not 1 <= interval <= 86400:
        raise ConfigError("the drift interval must be between 1 and 86400 seconds")
    liveness = args.liveness if args.liveness is not None else env.get(
        "CHATCELL_LIVENESS", "http://0.0.0.0:8080/healthz"
    )
    verbose = bool(args.verbose) or env.get("CHATCELL_VERBOSE", "").lower() in ("1", "true")
    return OperatorConfig(
        namespaces=namespaces, drift_interval_s=interval, liveness=liveness, verbose=verbose
    )
