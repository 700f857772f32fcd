"""The Kubernetes API calls the operator makes, and nothing else.

kopf watches ChatCells and patches their status after a handler; everything else (applying the
cell's objects, reading its Secrets, the drift check's status writes) goes through here. The
official client is blocking, so every call runs in a worker thread.

Objects are written with server-side apply under one field manager: creating and updating are
the same call, and a field someone else set (an HPA's replicas, a mutating webhook's
sidecar) is theirs unless the builder names it.

API errors are translated at this boundary: ``ApiUnavailable`` (try again later) and
``ApiRejected`` (the server refused the object; a retry sends the same object again).
The verbs used here are exactly the ones the chart's Role grants
(helm/chatcell/templates/rbac.yaml).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from chatcell_operator import GROUP, PLURAL, VERSION
from chatcell_operator.builders import MANAGER

T = TypeVar("T")
_TIMEOUT_S = 30


class KubeError(Exception):
    """Root of this module's errors; the message is fit for a status condition."""


class ApiUnavailable(KubeError):
    pass


class ApiRejected(KubeError):
    pass


class SecretMissing(KubeError):
    """A Secret (or a key in it) the cell refers to does not exist (yet)."""


def _reason(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body.startswith("{"):
        try:
            return str(json.loads(body).get("message") or exc.reason)
        except ValueError:
            pass
    return f"{exc.status} {exc.reason}"


def translate(doing: str, exc: Exception) -> KubeError:
    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status in (400, 403, 422) or (400 <= status < 500 and status not in (404, 409, 429)):
            return ApiRejected(f"{doing}: {_reason(exc)}")
        return ApiUnavailable(f"{doing}: {_reason(exc)}")
    return ApiUnavailable(f"{doing}: {exc}")


def load_api_client() -> client.ApiClient:
    """In a pod, the service account; elsewhere, $KUBECONFIG (or ~/.kube/config)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._policy = client.PolicyV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._appliers: dict[tuple[str, str], Callable[..., Any]] = {
            ("v1", "ConfigMap"): self._core.patch_namespaced_config_map,
            ("v1", "Service"): self._core.patch_namespaced_service,
            ("apps/v1", "Deployment"): self._apps.patch_namespaced_deployment,
            ("policy/v1", "PodDisruptionBudget"):
                self._policy.patch_namespaced_pod_disruption_budget,
        }

    async def _call(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=_TIMEOUT_S, **kwargs)
        except (ApiException, OSError) as exc:
            raise translate(doing, exc) from exc
        except Exception as exc:  # urllib3's errors do not share a useful base class
            if type(exc).__module__.startswith("urllib3"):
                raise ApiUnavailable(f"{doing}: {exc}") from exc
            raise

    async def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply one of the cell's objects (create or update)."""
        kind = manifest["kind"]
        meta = manifest["metadata"]
        applier = self._appliers[(manifest["apiVersion"], kind)]
        await self._call(
            f"applying {kind} {meta['name']}",
            applier,
            meta["name"],
            meta["namespace"],
            dict(manifest),
            field_manager=MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = await self._call(
                f"reading Secret {name}", self._core.read_namespaced_secret, name, namespace
            )
        except ApiUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                raise SecretMissing(f"Secret {namespace}/{name} does not exist") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            return base64.b64decode(data[key]).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise SecretMissing(f"Secret {namespace}/{name} key {key!r} is not text") from exc

    async def list_cells(self, namespace: str) -> list[dict[str, Any]]:
        result: Any = await self._call(
            f"listing ChatCells in {namespace}",
            self._custom.list_namespaced_custom_object,
            GROUP, VERSION, namespace, PLURAL,
        )
        return list(result.get("items", []))

    async def get_cell(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            cell: Any = await self._call(
                f"reading ChatCell {name}",
                self._custom.get_namespaced_custom_object,
                GROUP, VERSION, namespace, PLURAL, name,
            )
            return dict(cell)
        except ApiUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                return None
            raise

    async def patch_cell_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._call(
            f"updating the status of ChatCell {name}",
            self._custom.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )
