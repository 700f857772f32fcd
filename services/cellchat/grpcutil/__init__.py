"""gRPC plumbing shared by our services (chat, presence), on top of purerpc.

purerpc gives us HTTP/2, gRPC framing and the servicer/stub conventions; this package adds what
it lacks for production (see shared STACK notes): a server that enforces deadlines, maps errors
to precise statuses and stops gracefully (`server`), the standard health service (`health`),
server reflection so grpcurl works without .proto files (`reflection`), and the bearer token of
a call's metadata (`metadata`). Handlers stay plain purerpc servicer methods.

Only `_connection` touches purerpc's internals: the gRPC layer stays replaceable.
"""

from .deadlines import CallLimits, Deadline, call_deadline
from .health import HealthServicer, ServingStatus
from .metadata import CallInfo, Metadata, bearer_token
from .reflection import REFLECTION_SERVICES, ReflectionIndex, reflection_services
from .server import GrpcServer, ServerStatistics, serve_grpc
from .statuses import (
    ErrorMap,
    Rule,
    Status,
    StatusCode,
    rpc_error,
    single_exception,
    status_for_exception,
)

__all__ = [
    "REFLECTION_SERVICES",
    "CallInfo",
    "CallLimits",
    "Deadline",
    "ErrorMap",
    "GrpcServer",
    "HealthServicer",
    "Metadata",
    "ReflectionIndex",
    "Rule",
    "ServerStatistics",
    "ServingStatus",
    "Status",
    "StatusCode",
    "bearer_token",
    "call_deadline",
    "reflection_services",
    "rpc_error",
    "serve_grpc",
    "single_exception",
    "status_for_exception",
]
