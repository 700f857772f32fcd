"""Reflection answers from the descriptor pool, exercised through the purerpc handler itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import purerpc
import pytest
import trio
from google.protobuf import api_pb2, descriptor_pb2

from cellchat.api.reflection.v1 import reflection_pb2 as v1
from cellchat.api.reflection.v1alpha import reflection_pb2 as v1alpha
from cellchat.grpcutil import (
    REFLECTION_SERVICES,
    HealthServicer,
    ReflectionIndex,
    StatusCode,
    reflection_services,
)

HEALTH_FILE = "cellchat/api/health/v1/health.proto"
assert HealthServicer  # its generated module registers HEALTH_FILE in the pool
assert api_pb2  # google/protobuf/api.proto: a file with transitive dependencies


async def ask(version: Any, *requests: Any) -> list[Any]:
    """Send `requests` on one reflection stream of the given version; the responses."""
    name = f"{version.DESCRIPTOR.package}.ServerReflection"
    index = ReflectionIndex(["grpc.health.v1.Health", *REFLECTION_SERVICES])
    (service,) = [s for s in reflection_services(index) if s.name == name]
    method = service.methods["ServerReflectionInfo"]
    assert method.signature.cardinality is purerpc.Cardinality.STREAM_STREAM

    async def stream() -> AsyncIterator[Any]:
        for request in requests:
            yield request

    with trio.fail_after(5):
        return [response async for response in method.method_fn(stream(), request=None)]


def file_names(response: Any) -> list[str]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(blob).name
        for blob in response.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("version", [v1, v1alpha])
async def test_list_services(version: Any) -> None:
    (response,) = await ask(version, version.ServerReflectionRequest(list_services="*"))
    assert [s.name for s in response.list_services_response.service] == sorted(
        ["grpc.health.v1.Health", *REFLECTION_SERVICES]
    )
    assert response.original_request.list_services == "*"


async def test_symbol_lookup_finds_services_methods_messages_and_enums() -> None:
    symbols = [
        "grpc.health.v1.Health",
        "grpc.health.v1.Health.Watch",
        "grpc.health.v1.HealthCheckResponse",
        "grpc.health.v1.HealthCheckResponse.ServingStatus",
    ]
    responses = await ask(
        v1, *(v1.ServerReflectionRequest(file_containing_symbol=s) for s in symbols)
    )
    # The file is sent whenever asked for; it has no dependencies.
    assert [file_names(r) for r in responses] == [[HEALTH_FILE]] * len(symbols)


async def test_files_come_with_transitive_dependencies_once_per_stream() -> None:
    first, second = await ask(
        v1,
        v1.ServerReflectionRequest(file_by_filename="google/protobuf/api.proto"),
        v1.ServerReflectionRequest(file_containing_symbol="google.protobuf.Method"),
    )
    assert file_names(first)[0] == "google/protobuf/api.proto"
    assert set(file_names(first)) == {
        "google/protobuf/api.proto",
        "google/protobuf/source_context.proto",
        "google/protobuf/type.proto",
        "google/protobuf/any.proto",
    }
    assert file_names(second) == ["google/protobuf/api.proto"]


async def test_unknown_names_answer_not_found_and_the_stream_goes_on() -> None:
    missing_file, missing_symbol, services = await ask(
        v1alpha,
        v1alpha.ServerReflectionRequest(file_by_filename="nope.proto"),
        v1alpha.ServerReflectionRequest(file_containing_symbol="nope.Nothing"),
        v1alpha.ServerReflectionRequest(list_services=""),
    )
    for response in (missing_file, missing_symbol):
        assert response.WhichOneof("message_response") == "error_response"
        assert response.error_response.error_code == StatusCode.NOT_FOUND.value
    assert "nope" in missing_file.error_response.error_message
    assert services.WhichOneof("message_response") == "list_services_response"


async def test_extension_numbers_of_a_message_without_extensions() -> None:
    (response,) = await ask(
        v1,
        v1.ServerReflectionRequest(
            all_extension_numbers_of_type="grpc.health.v1.HealthCheckRequest"
        ),
    )
    numbers = response.all_extension_numbers_response
    assert numbers.base_type_name == "grpc.health.v1.HealthCheckRequest"
    assert list(numbers.extension_number) == []


async def test_empty_request_is_an_invalid_argument() -> None:
    (response,) = await ask(v1, v1.ServerReflectionRequest(host="h"))
    assert response.valid_host == "h"
    assert response.error_response.error_code == StatusCode.INVALID_ARGUMENT.value
