"""The gRPC figure's service: bench/proto/bench_echo.proto, generated at run time.

`modules()` generates the messages (protoc), the purerpc stubs (protoc-gen-purerpc, which
comes with purerpc) and the grpcio stubs into a cache directory keyed by the proto's hash and
the generator's version, and imports them. Nothing generated is committed.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO = Path(__file__).resolve().parent / "proto" / "bench_echo.proto"
SERVICE = "cellchat.bench.v1.Echo"


def _cache_root() -> Path:
    base = os.environ.get("CELLCHAT_CACHE") or str(Path.home() / ".cache" / "cellchat")
    return Path(base) / "bench-gen"


def generate() -> Path:
    """The directory holding bench_echo_pb2 / _grpc / _pb2_grpc (generated if missing)."""
    import grpc_tools

    version = getattr(importlib.import_module("grpc_tools"), "__version__", "")
    digest = hashlib.sha256(PROTO.read_bytes() + version.encode()).hexdigest()[:16]
    target = _cache_root() / digest
    if (target / "bench_echo_pb2.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="gen-", dir=target.parent))
    try:
        include = Path(grpc_tools.__file__).resolve().parent / "_proto"
        command = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"--proto_path={PROTO.parent}", f"--proto_path={include}",
            f"--python_out={staging}", f"--purerpc_out={staging}",
            f"--grpc_python_out={staging}", str(PROTO),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"protoc failed: {done.stderr.strip()}")
        try:
            staging.rename(target)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(messages, purerpc stubs, grpcio stubs)."""
    where = str(generate())
    if where not in sys.path:
        sys.path.insert(0, where)
    return (importlib.import_module("bench_echo_pb2"), importlib.import_module("bench_echo_grpc"),
            importlib.import_module("bench_echo_pb2_grpc"))


def purerpc_servicer() -> Any:
    pb, purerpc_stubs, _ = modules()

    class EchoServicer(purerpc_stubs.EchoServicer):  # type: ignore[misc, name-defined]
        async def Unary(self, message: Any) -> Any:
            return pb.EchoReply(payload=message.payload)

        async def ServerStream(self, message: Any) -> Any:
            for index in range(message.count):
                yield pb.EchoReply(payload=message.payload, index=index)

    return EchoServicer()


def aio_servicer() -> Any:
    pb, _, grpc_stubs = modules()

    class EchoServicer(grpc_stubs.EchoServicer):  # type: ignore[misc, name-defined]
        async def Unary(self, request: Any, context: Any) -> Any:
            return pb.EchoReply(payload=request.payload)

        async def ServerStream(self, request: Any, context: Any) -> Any:
            for index in range(request.count):
                yield pb.EchoReply(payload=request.payload, index=index)

    return EchoServicer()
