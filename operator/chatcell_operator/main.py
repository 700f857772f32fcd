"""The kopf handlers of the ChatCell operator, and ``run()``, the console script.

Only registration and translation live here: a handler calls ``reconcile`` (or ``keyspaces``
for deletion), writes the pass's conditions to the status through kopf's ``patch``, and turns
the outcome into kopf's retry semantics: ``TemporaryError(delay=backoff)`` for what may heal
by itself (database down, Secret not there yet), ``PermanentError`` for what only an edit of
the spec can fix. kopf applies ``patch`` even when the handler raises, so the status always
says why a cell is not ready.

Finalizer: only a cell whose ``keyspacePolicy`` is ``Delete`` matches the deletion handler,
so only such a cell gets kopf's finalizer (and loses it if the policy goes back to Retain).
A Retain cell is deleted by the API server alone, even with the operator down. The handler
also gives up after ``DELETE_TIMEOUT_S`` so a cell never stays in Terminating forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import kopf

from chatcell_operator import GROUP, PLURAL, VERSION, conditions, drift, keyspaces
from chatcell_operator.config import ConfigError, OperatorConfig, from_args
from chatcell_operator.kube import Kube, KubeError, load_api_client
from chatcell_operator.reconcile import (
    Context,
    Outcome,
    backoff,
    endpoint_for,
    now_text,
    reconcile,
)
from chatcell_operator.spec import InvalidSpec, parse

ANNOTATION_PREFIX = "chatcell.cellchat.io"
FINALIZER = "cellchat.io/drop-keyspace"
DELETE_TIMEOUT_S = 600.0


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's settings, decided before it starts (scanning is read before any handler runs)."""
    settings = kopf.OperatorSettings()
    # Namespaced and least-privilege: the namespaces are given, the CRD is installed before
    # the operator, so kopf need not list or watch CRDs and namespaces cluster-wide (which
    # would need a ClusterRole, and without one costs a minute of retries at start-up).
    settings.scanning.disabled = True
    # Where kopf keeps its own state: annotations under our prefix, never in ``status``
    # (the CRD's structural schema would prune unknown status fields).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # Kubernetes events only for what needs a look
    settings.watching.connect_timeout = 30
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    return settings


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own minimal logins: no dependency on how the client library reads configs.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.config
    context = Context(kube=Kube(load_api_client()), sessions=keyspaces.Sessions())
    memo.context = context
    memo.drift_task = asyncio.create_task(
        drift.run_forever(context, config.namespaces, config.drift_interval_s),
        name="drift-check",
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("drift_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    context: Context | None = memo.get("context")
    if context is not None:
        await asyncio.to_thread(context.sessions.close)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_cell(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    retry: int,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    context: Context = memo.context
    async with context.locks(str(meta["uid"])):
        result = await reconcile(context, body)
    patch.status.update(
        conditions.status_patch(
            status,
            result.updates,
            now=now_text(),
            generation=meta.get("generation"),
            observed=result.outcome is not Outcome.RETRY,
            fields=result.fields,
        )
    )
    if result.outcome is Outcome.RETRY:
        delay = backoff(retry)
        raise kopf.TemporaryError(f"{result.message} (retrying in {delay:.0f} s)", delay=delay)
    if result.outcome is Outcome.FAILED:
        raise kopf.PermanentError(result.message)
    logger.info("%s", result.message)


def _drops_keyspace(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("keyspacePolicy") == "Delete"


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_drops_keyspace, timeout=DELETE_TIMEOUT_S)
async def drop_keyspace(
    spec: kopf.Spec,
    uid: str,
    name: str,
    namespace: str | None,
    retry: int,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    context: Context = memo.context
    try:
        cell = parse(spec, name=name, namespace=namespace or "")
    except InvalidSpec as exc:
        raise kopf.PermanentError(f"cannot drop the keyspace: {exc}") from exc
    try:
        async with context.locks(uid):  # not while a drift check re-creates it
            endpoint = await endpoint_for(context.kube, cell)
            session = await asyncio.to_thread(context.sessions.get, endpoint)
            dropped = await asyncio.to_thread(keyspaces.drop, session, cell.keyspace)
    except keyspaces.DatabaseRejected as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except (keyspaces.KeyspaceError, KubeError) as exc:
        delay = backoff(retry)
        raise kopf.TemporaryError(f"{exc} (retrying in {delay:.0f} s)", delay=delay) from exc
    if dropped:
        logger.info("keyspace %s dropped (keyspacePolicy: Delete)", cell.keyspace)
    else:
        logger.info("keyspace %s was already gone", cell.keyspace)


def run(argv: Sequence[str] | None = None) -> None:
    """Console script ``chatcell-operator``: parse the settings and run kopf until signalled."""
    try:
        config = from_args(argv)
    except ConfigError as exc:
        raise SystemExit(f"chatcell-operator: {exc}") from None
    kopf.configure(verbose=config.verbose, log_format=kopf.LogFormat.FULL)
    # Debug logs are for the operator's own decisions; the driver's and the HTTP pool's
    # per-request chatter would drown them.
    for noisy in ("cassandra", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    asyncio.run(
        kopf.operator(
            standalone=True,  # one replica (Recreate strategy in the chart); no peering CRDs
            clusterwide=False,
            namespaces=list(config.namespaces),
            liveness_endpoint=config.liveness or None,
            memo=kopf.Memo(config=config),
            settings=kopf_settings(),
        )
    )
