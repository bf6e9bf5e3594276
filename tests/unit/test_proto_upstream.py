"""Our hand-written proto/cri_api/api.proto must speak upstream's CRI v1 wire format.

The reference is the descriptor compiled into PyPI's `container-runtime-interface-api`
2.0.1 (installed by `make venv` into `.venv/upstream-cri`). That package's import name is
`cri_api`, like ours, so its descriptor is read in a subprocess and handed over as serialized
`FileDescriptorProto` bytes.

The package is older than the cri-api v0.36 we transcribe, so some of our definitions cannot be
found in it. They are listed in the allow-lists below, each checked to really be absent upstream
(so a list that grows stale fails), and everything else must match exactly in both directions.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from cri_api import api_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_DIR = REPO_ROOT / ".venv" / "upstream-cri"
UPSTREAM_GENCODE = UPSTREAM_DIR / "cri_api" / "v1" / "api_pb2.py"
PACKAGE = "runtime.v1"

# Definitions added to cri-api after the one packaged in container-runtime-interface-api 2.0.1.
# Each one was checked against k8s.io/cri-api pkg/apis/runtime/v1/api.proto (v0.36).

# The CRIListStreaming feature (KEP 5825): one server-streaming Stream* RPC per list RPC,
# as `Service.StreamMethod` -> the unary `ListMethod` it mirrors. 2.0.1 cannot vouch for their
# shape, so test_streaming_lists_mirror_their_list_rpcs checks it against the list RPC.
STREAMING_LISTS: dict[str, str] = {
    "RuntimeService.StreamPodSandboxes": "ListPodSandbox",
    "RuntimeService.StreamContainers": "ListContainers",
    "RuntimeService.StreamContainerStats": "ListContainerStats",
    "RuntimeService.StreamPodSandboxStats": "ListPodSandboxStats",
    "RuntimeService.StreamPodSandboxMetrics": "ListPodSandboxMetrics",
    "ImageService.StreamImages": "ListImages",
}
NEWER_METHODS: frozenset[str] = frozenset(STREAMING_LISTS)
NEWER_MESSAGES: frozenset[str] = frozenset(
    f"{method.split('.', 1)[1]}{suffix}"
    for method in STREAMING_LISTS
    for suffix in ("Request", "Response")
)
# message.field -> (number, type) as in v0.36, for fields added to messages 2.0.1 already has.
# 2.0.1 cannot vouch for them, so their number and scalar type are pinned here instead.
NEWER_FIELDS: dict[str, tuple[int, str]] = {
    # Audit correlation id for exec/attach sessions.
    "ExecRequest.audit_request_id": (7, "TYPE_STRING"),
    "AttachRequest.audit_request_id": (6, "TYPE_STRING"),
    # Digest of an image-volume image (image volumes, KEP 4639).
    "ImageSpec.image_ref": (20, "TYPE_STRING"),
    # Runtime advertises user namespaces together with host networking.
    "RuntimeFeatures.user_namespaces_host_network": (2, "TYPE_BOOL"),
}
# enum.VALUE for values added to enums that exist in 2.0.1 already.
NEWER_ENUM_VALUES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FieldShape:
    """Everything about a field that decides its wire and JSON encoding."""

    number: int
    type: str
    label: str
    type_name: str
    oneof: str
    proto3_optional: bool
    json_name: str


@dataclass(frozen=True)
class MethodShape:
    input_type: str
    output_type: str
    client_streaming: bool
    server_streaming: bool


@dataclass(frozen=True)
class ApiShape:
    """A proto file flattened to names: messages and enums keyed by name relative to the package
    (nested ones as `Outer.Inner`), services as `Service.Method`."""

    syntax: str
    package: str
    messages: dict[str, dict[str, FieldShape]]
    map_entries: set[str]
    enums: dict[str, dict[str, int]]
    methods: dict[str, MethodShape]


def _short(full_name: str) -> str:
    """`.runtime.v1.Foo.Bar` -> `Foo.Bar`; names outside the package stay whole."""
    prefix = f".{PACKAGE}."
    return full_name[len(prefix) :] if full_name.startswith(prefix) else full_name


def _walk_messages(
    pool: descriptor_pool.DescriptorPool,
    messages: list[descriptor_pb2.DescriptorProto],
    scope: str,
    shape: ApiShape,
) -> None:
    for message in messages:
        name = f"{scope}{message.name}"
        runtime_message = pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
        fields: dict[str, FieldShape] = {}
        for field in message.field:
            oneof = (
                message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else ""
            )
            fields[field.name] = FieldShape(
                number=field.number,
                type=descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
                label=descriptor_pb2.FieldDescriptorProto.Label.Name(field.label),
                type_name=_short(field.type_name),
                oneof=oneof,
                proto3_optional=field.proto3_optional,
                # protoc leaves json_name out of the embedded descriptor; the pool derives it.
                json_name=runtime_message.fields_by_name[field.name].json_name,
            )
        shape.messages[name] = fields
        if message.options.map_entry:
            shape.map_entries.add(name)
        for enum in message.enum_type:
            shape.enums[f"{name}.{enum.name}"] = {v.name: v.number for v in enum.value}
        _walk_messages(pool, list(message.nested_type), f"{name}.", shape)


def api_shape(serialized: bytes) -> ApiShape:
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    pool = descriptor_pool.DescriptorPool()  # private pool: both files declare runtime.v1
    pool.AddSerializedFile(serialized)
    shape = ApiShape(
        syntax=file_proto.syntax,
        package=file_proto.package,
        messages={},
        map_entries=set(),
        enums={},
        methods={},
    )
    for enum in file_proto.enum_type:
        shape.enums[enum.name] = {v.name: v.number for v in enum.value}
    _walk_messages(pool, list(file_proto.message_type), "", shape)
    for service in file_proto.service:
        for method in service.method:
            shape.methods[f"{service.name}.{method.name}"] = MethodShape(
                input_type=_short(method.input_type),
                output_type=_short(method.output_type),
                client_streaming=method.client_streaming,
                server_streaming=method.server_streaming,
            )
    return shape


# Runs with only the upstream folder first on sys.path (-P drops the cwd entry): the gencode
# is loaded as a standalone module so the package's own __init__ (which wants grpc and the
# v1alpha2 API too) never runs, and our `cri_api` cannot shadow it.
_DUMP_UPSTREAM = """
import base64, importlib.util, sys
spec = importlib.util.spec_from_file_location("upstream_cri_v1_api_pb2", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(base64.b64encode(module.DESCRIPTOR.serialized_pb).decode())
"""


@pytest.fixture(scope="module")
def upstream() -> ApiShape:
    if not UPSTREAM_GENCODE.is_file():
        pytest.skip(
            f"upstream CRI descriptor absent: {UPSTREAM_GENCODE} "
            "(run `make venv` to install container-runtime-interface-api==2.0.1)"
        )
    env = {**os.environ, "PYTHONPATH": str(UPSTREAM_DIR)}
    proc = subprocess.run(
        [sys.executable, "-P", "-c", _DUMP_UPSTREAM, str(UPSTREAM_GENCODE)],
        env=env,
        cwd=UPSTREAM_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"failed to load upstream descriptor: {proc.stderr}"
    return api_shape(base64.b64decode(proc.stdout.strip()))


@pytest.fixture(scope="module")
def ours() -> ApiShape:
    return api_shape(api_pb2.DESCRIPTOR.serialized_pb)


def test_file_level(upstream: ApiShape, ours: ApiShape) -> None:
    assert ours.syntax == upstream.syntax == "proto3"
    assert ours.package == upstream.package == PACKAGE


def test_every_upstream_message_and_field_matches(upstream: ApiShape, ours: ApiShape) -> None:
    problems: list[str] = []
    for message, upstream_fields in sorted(upstream.messages.items()):
        if message not in ours.messages:
            problems.append(f"{message}: missing from our proto")
            continue
        if (message in upstream.map_entries) != (message in ours.map_entries):
            problems.append(f"{message}: map entry flag differs")
        for field, want in sorted(upstream_fields.items()):
            got = ours.messages[message].get(field)
            if got is None:
                problems.append(f"{message}.{field}: missing from our proto")
            elif got != want:
                problems.append(f"{message}.{field}: ours {got} != upstream {want}")
    assert not problems, "\n".join(problems)


def test_every_field_of_ours_exists_upstream(upstream: ApiShape, ours: ApiShape) -> None:
    problems: list[str] = []
    for message, fields in sorted(ours.messages.items()):
        if message not in upstream.messages:
            if message not in NEWER_MESSAGES:
                problems.append(f"{message}: not upstream and not in NEWER_MESSAGES")
            continue
        for field in sorted(fields):
            known = field in upstream.messages[message]
            if not known and f"{message}.{field}" not in NEWER_FIELDS:
                problems.append(f"{message}.{field}: not upstream and not in NEWER_FIELDS")
    assert not problems, "\n".join(problems)


def test_enums_match(upstream: ApiShape, ours: ApiShape) -> None:
    problems: list[str] = []
    for enum, upstream_values in sorted(upstream.enums.items()):
        our_values = ours.enums.get(enum)
        if our_values is None:
            problems.append(f"{enum}: missing from our proto")
            continue
        for value, number in sorted(upstream_values.items()):
            if our_values.get(value) != number:
                problems.append(
                    f"{enum}.{value}: ours {our_values.get(value)} != upstream {number}"
                )
        for value in sorted(our_values.keys() - upstream_values.keys()):
            if f"{enum}.{value}" not in NEWER_ENUM_VALUES:
                problems.append(f"{enum}.{value}: not upstream and not in NEWER_ENUM_VALUES")
    for enum in sorted(ours.enums.keys() - upstream.enums.keys()):
        problems.append(f"{enum}: enum not upstream (no allow-list for new enums)")
    assert not problems, "\n".join(problems)


def test_service_methods_match(upstream: ApiShape, ours: ApiShape) -> None:
    problems: list[str] = []
    for method, want in sorted(upstream.methods.items()):
        got = ours.methods.get(method)
        if got is None:
            problems.append(f"{method}: missing from our proto")
        elif got != want:
            problems.append(f"{method}: ours {got} != upstream {want}")
    for method in sorted(ours.methods.keys() - upstream.methods.keys()):
        if method not in NEWER_METHODS:
            problems.append(f"{method}: not upstream and not in NEWER_METHODS")
    assert not problems, "\n".join(problems)


def test_newer_than_upstream_allow_lists_are_exact(upstream: ApiShape, ours: ApiShape) -> None:
    """Every allow-listed addition is ours and absent upstream: a stale entry fails here."""
    stale = sorted(NEWER_MESSAGES & upstream.messages.keys())
    assert not stale, f"in NEWER_MESSAGES but already upstream: {stale}"
    absent = sorted(NEWER_MESSAGES - ours.messages.keys())
    assert not absent, f"in NEWER_MESSAGES but not in our proto: {absent}"
    stale = sorted(NEWER_METHODS & upstream.methods.keys())
    assert not stale, f"in NEWER_METHODS but already upstream: {stale}"
    absent = sorted(NEWER_METHODS - ours.methods.keys())
    assert not absent, f"in NEWER_METHODS but not in our proto: {absent}"
    for entry, (number, field_type) in NEWER_FIELDS.items():
        message, field = entry.rsplit(".", 1)
        assert message in upstream.messages, f"{entry}: message not upstream, list it whole"
        assert field not in upstream.messages[message], f"{entry}: already upstream"
        got = ours.messages.get(message, {}).get(field)
        assert got is not None, f"{entry}: not in our proto"
        assert (got.number, got.type, got.label) == (number, field_type, "LABEL_OPTIONAL"), (
            f"{entry}: ours {got} != pinned v0.36 shape {number} {field_type}"
        )
    for entry in NEWER_ENUM_VALUES:
        enum, value = entry.rsplit(".", 1)
        assert value not in upstream.enums.get(enum, {}), f"{entry}: already upstream"
        assert value in ours.enums.get(enum, {}), f"{entry}: not in our proto"


def test_service_sizes(ours: ApiShape) -> None:
    """cri-api v0.36: 35 RuntimeService RPCs and 6 ImageService RPCs."""
    services = [method.split(".", 1)[0] for method in ours.methods]
    assert services.count("RuntimeService") == 35
    assert services.count("ImageService") == 6


def test_streaming_lists_mirror_their_list_rpcs(upstream: ApiShape, ours: ApiShape) -> None:
    """Each Stream* RPC takes the list RPC's request fields and streams chunks of its items."""
    for stream_method, list_name in STREAMING_LISTS.items():
        service, stream_name = stream_method.split(".", 1)
        list_method = upstream.methods[f"{service}.{list_name}"]
        assert ours.methods[stream_method] == MethodShape(
            input_type=f"{stream_name}Request",
            output_type=f"{stream_name}Response",
            client_streaming=False,
            server_streaming=True,
        ), stream_method
        assert (
            ours.messages[f"{stream_name}Request"] == upstream.messages[list_method.input_type]
        ), f"{stream_name}Request: fields differ from {list_method.input_type}"
        list_items = upstream.messages[list_method.output_type]
        stream_items = ours.messages[f"{stream_name}Response"]
        assert len(list_items) == len(stream_items) == 1, f"{stream_name}Response: one list field"
        (want,) = list_items.values()
        (got,) = stream_items.values()
        assert (got.number, got.label, got.type, got.type_name) == (
            want.number,
            want.label,
            want.type,
            want.type_name,
        ), f"{stream_name}Response: item field {got} does not match {want}"
