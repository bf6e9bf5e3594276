"""Checks on a PodSandboxConfig before anything is created.

The CRI accepts any non-empty name, namespace and uid: Kubernetes' naming rules are the API
server's business, and critest sends names such as `PodSandbox-for-create-test-<uuid>`. What
cannot be carried safely is refused: the names end up in CNI_ARGS (`k=v;k=v`, which has no
escaping, so `;` or `=` in a value would forge arguments), and control characters (NUL above
all) in environment variables and log lines. Docker container names are derived from them
separately (`shim.engine.naming`), so they need not fit Docker's name rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from cri_api import api_pb2
from shim.errors import InvalidArgumentError
from shim.sandbox.linux_validation import check_linux

# Patterns are used with fullmatch: `$` would also match before a trailing newline.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
)
_DNS_OPTION = re.compile(r"[!-~]+")  # printable, no blanks: one resolv.conf token
# ';' and '=' would forge CNI_ARGS; control characters (C0, DEL, C1) have no safe carrier.
_UNCARRIABLE = re.compile(r"[;=\x00-\x1f\x7f-\x9f]")
NAME_LIMIT = 253  # bytes, as UTF-8

SUPPORTED_RUNTIME_HANDLERS = ("", "runc")


# Kubernetes' API server allows 256 KiB of annotations a pod (labels are far smaller); a bound
# keeps ListPodSandbox under kubelet's 16 MiB message limit with hundreds of pods.
METADATA_LIMIT = 256 * 1024


def validate_sandbox_config(
    config: api_pb2.PodSandboxConfig, runtime_handler: str, cgroup_driver: str = "cgroupfs"
) -> None:
    if runtime_handler not in SUPPORTED_RUNTIME_HANDLERS:
        raise InvalidArgumentError(
            f"runtime handler {runtime_handler!r} is not configured (cri-shim has only 'runc')"
        )
    if not config.HasField("metadata"):
        raise InvalidArgumentError("pod sandbox config has no metadata")
    meta = config.metadata
    for field, value in (
        ("metadata.name", meta.name),
        ("metadata.namespace", meta.namespace),
        ("metadata.uid", meta.uid),
    ):
        check_carriable_name(f"pod sandbox config field {field}", value)
    if config.hostname:
        _check("hostname", config.hostname, _HOSTNAME, 64, "a valid host name")
    for i, mapping in enumerate(config.port_mappings):
        _check_port_mapping(i, mapping)
    _check_dns(config.dns_config)
    for key in list(config.labels) + list(config.annotations):
        if not key:
            raise InvalidArgumentError("pod sandbox labels and annotations need non-empty keys")
    check_metadata_size("pod sandbox", config.labels, config.annotations)
    check_linux(config, cgroup_driver)


def check_metadata_size(
    what: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> None:
    for field, mapping in (("labels", labels), ("annotations", annotations)):
        size = sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())
        if size > METADATA_LIMIT:
            raise InvalidArgumentError(
                f"{what} {field} are {size} bytes in all (at most {METADATA_LIMIT})"
            )


def check_carriable_name(what: str, value: str) -> None:
    """Non-empty, at most NAME_LIMIT bytes, and free of what cannot be carried safely."""
    if not value:
        raise InvalidArgumentError(f"{what} is empty")
    size = len(value.encode())
    if size > NAME_LIMIT:
        raise InvalidArgumentError(f"{what} is {size} bytes long (at most {NAME_LIMIT})")
    bad = _UNCARRIABLE.search(value)
    if bad:
        raise InvalidArgumentError(
            f"{what} {value!r} contains {bad.group()!r}, which cannot be carried safely"
            " (';', '=' and control characters are refused)"
        )


def _check(field: str, value: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    if not value:
        raise InvalidArgumentError(f"pod sandbox config field {field} is empty")
    if len(value) > limit:
        raise InvalidArgumentError(
            f"pod sandbox config field {field} is {len(value)} characters long (at most {limit})"
        )
    if not pattern.fullmatch(value):
        raise InvalidArgumentError(f"pod sandbox config field {field} {value!r} is not {what}")


def _check_port_mapping(index: int, mapping: api_pb2.PortMapping) -> None:
    where = f"port_mappings[{index}]"
    if not 1 <= mapping.container_port <= 65535:
        raise InvalidArgumentError(
            f"{where}.container_port {mapping.container_port} is not 1-65535"
        )
    if not 0 <= mapping.host_port <= 65535:
        raise InvalidArgumentError(f"{where}.host_port {mapping.host_port} is not 0-65535")
    if mapping.protocol not in api_pb2.Protocol.values():
        raise InvalidArgumentError(f"{where}.protocol {mapping.protocol} is not TCP, UDP or SCTP")
    if mapping.host_ip:
        try:
            ipaddress.ip_address(mapping.host_ip)
        except ValueError as err:
            raise InvalidArgumentError(
                f"{where}.host_ip {mapping.host_ip!r} is not an IP address"
            ) from err


def _check_dns(dns: api_pb2.DNSConfig) -> None:
    for server in dns.servers:
        try:
            ipaddress.ip_address(server)
        except ValueError as err:
            raise InvalidArgumentError(
                f"dns_config.servers entry {server!r} is not an IP address"
            ) from err
    for search in dns.searches:
        if not _DNS_SUBDOMAIN.fullmatch(search.lower().rstrip(".")) or len(search) > 253:
            raise InvalidArgumentError(f"dns_config.searches entry {search!r} is not a domain")
    for option in dns.options:
        if not _DNS_OPTION.fullmatch(option):
            raise InvalidArgumentError(
                f"dns_config.options entry {option!r} is not a single resolv.conf option"
            )
