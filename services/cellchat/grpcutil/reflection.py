"""gRPC server reflection (v1 and v1alpha), answered from the protobuf descriptor pool.

With it, grpcurl and similar tools list our services, describe their messages and call them
with no .proto file on the client. Both protocol versions are served because clients differ in
which one they ask first; their messages are the same under two package names.

Rules:

* The descriptors come from a descriptor pool (the process-wide default one unless told
  otherwise): the generated `*_pb2` modules of every served service are imported by its
  servicer, which registers them there.
* `list_services` names the services this server serves (and only those), reflection included.
* File answers carry the requested file first, then its transitive dependencies that this
  stream has not sent yet (clients cache per stream; resending google/protobuf/*.proto each
  time would be waste).
* Lookups that fail answer an `error_response` with NOT_FOUND on the same stream; the stream
  itself stays open, as the protocol wants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from types import ModuleType
from typing import Any

import purerpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from cellchat.api.reflection.v1 import reflection_pb2 as v1_pb2
from cellchat.api.reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from .statuses import StatusCode

__all__ = ["REFLECTION_SERVICES", "ReflectionIndex", "reflection_services"]

_VERSIONS: dict[str, ModuleType] = {
    "grpc.reflection.v1.ServerReflection": v1_pb2,
    "grpc.reflection.v1alpha.ServerReflection": v1alpha_pb2,
}
#: The names under which `reflection_services` serves reflection.
REFLECTION_SERVICES: tuple[str, ...] = tuple(_VERSIONS)


class ReflectionIndex:
    """The lookups reflection needs, over a descriptor pool; no I/O, no protocol."""

    def __init__(self, service_names: Iterable[str], pool: DescriptorPool | None = None) -> None:
        self.service_names = tuple(sorted(set(service_names)))
        self._pool = pool if pool is not None else descriptor_pool.Default()

    def file_by_name(self, filename: str) -> FileDescriptor:
        return self._pool.FindFileByName(filename)

    def file_containing_symbol(self, symbol: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # The pool indexes services but not their methods: "pkg.Service.Method".
            service_name, _, method = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)
            if method not in service.methods_by_name:
                raise
            return service.file

    def file_containing_extension(self, containing_type: str, number: int) -> FileDescriptor:
        message = self._pool.FindMessageTypeByName(containing_type)
        return self._pool.FindExtensionByNumber(message, number).file

    def extension_numbers(self, containing_type: str) -> list[int]:
        message = self._pool.FindMessageTypeByName(containing_type)
        return sorted(ext.number for ext in self._pool.FindAllExtensions(message))

    @staticmethod
    def serialized_with_dependencies(file: FileDescriptor, already_sent: set[str]) -> list[bytes]:
        """`file`, then its transitive dependencies not in `already_sent` (which it updates)."""
        out = [file.serialized_pb]
        already_sent.add(file.name)
        pending = list(file.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.name in already_sent:
                continue
            already_sent.add(dependency.name)
            out.append(dependency.serialized_pb)
            pending.extend(dependency.dependencies)
        return out


class _ReflectionStream:
    """One reflection stream: answers requests in order, remembers the files it sent."""

    def __init__(self, index: ReflectionIndex, messages: ModuleType) -> None:
        self._index = index
        self._pb = messages
        self._sent: set[str] = set()

    def answer(self, request: Any) -> Any:
        response = self._pb.ServerReflectionResponse(
            valid_host=request.host, original_request=request
        )
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                response.list_services_response.service.extend(
                    self._pb.ServiceResponse(name=name) for name in self._index.service_names
                )
            elif kind == "all_extension_numbers_of_type":
                name = request.all_extension_numbers_of_type
                numbers = response.all_extension_numbers_response
                numbers.base_type_name = name
                numbers.extension_number.extend(self._index.extension_numbers(name))
            elif kind is not None:
                file = self._file(request, kind)
                files = self._index.serialized_with_dependencies(file, self._sent)
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            else:
                response.error_response.error_code = StatusCode.INVALID_ARGUMENT.value
                response.error_response.error_message = "empty reflection request"
        except KeyError as exc:
            response.ClearField("message_response")
            response.error_response.error_code = StatusCode.NOT_FOUND.value
            response.error_response.error_message = str(exc.args[0] if exc.args else exc)
        return response

    def _file(self, request: Any, kind: str) -> FileDescriptor:
        if kind == "file_by_filename":
            return self._index.file_by_name(request.file_by_filename)
        if kind == "file_containing_symbol":
            return self._index.file_containing_symbol(request.file_containing_symbol)
        extension = request.file_containing_extension
        return self._index.file_containing_extension(
            extension.containing_type, extension.extension_number
        )


def reflection_services(index: ReflectionIndex) -> list[purerpc.Service]:
    """purerpc services for both reflection versions, answering from `index`."""
    services = []
    for name, messages in _VERSIONS.items():
        service = purerpc.Service(name)
        service.add_method(
            "ServerReflectionInfo",
            _stream_handler(index, messages),
            purerpc.RPCSignature(
                purerpc.Cardinality.STREAM_STREAM,
                messages.ServerReflectionRequest,
                messages.ServerReflectionResponse,
            ),
        )
        services.append(service)
    return services


def _stream_handler(
    index: ReflectionIndex, messages: ModuleType
) -> Callable[[AsyncIterator[Any]], AsyncIterator[Any]]:
    async def server_reflection_info(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        stream = _ReflectionStream(index, messages)
        async for request in requests:
            yield stream.answer(request)

    return server_reflection_info
