"""What one plugin reads on stdin (spec section "Network configuration lists" and
"Deriving execution configuration from plugin configuration")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cnilib.types import GCAttachment, NetworkConfig, Result, RuntimeConf

VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments"
# An earlier draft of the 1.1 spec named the key this way; libcni sends both (its
# issue #1101) so plugins written against either text find the list. So do we.
LEGACY_ATTACHMENTS_KEY = "cni.dev/attachments"


def runtime_config(plugin: NetworkConfig, rt: RuntimeConf) -> dict[str, Any]:
    """Only capabilities the plugin declares true AND the runtime supplies.

    Spec: the runtime must not pass a capability the plugin did not ask for, so a
    plugin never sees data it cannot interpret (e.g. portMappings to `tuning`).
    """
    return {
        cap: rt.capability_args[cap]
        for cap, enabled in plugin.capabilities.items()
        if enabled and cap in rt.capability_args
    }


def plugin_stdin(
    net_name: str,
    cni_version: str,
    plugin: NetworkConfig,
    rt: RuntimeConf | None = None,
    prev_result: Result | None = None,
    valid_attachments: Sequence[GCAttachment] | None = None,
) -> bytes:
    conf: dict[str, Any] = dict(plugin.raw)
    # Every plugin of a list runs under the list's name and negotiated version,
    # whatever its own object says.
    conf["name"] = net_name
    conf["cniVersion"] = cni_version
    if prev_result is not None:
        # prevResult must be in the config's version (spec "Chained plugins").
        conf["prevResult"] = prev_result.to_dict(cni_version)
    if rt is not None:
        caps = runtime_config(plugin, rt)
        if caps:
            conf["runtimeConfig"] = caps
    if valid_attachments is not None:
        listed = [a.to_dict() for a in valid_attachments]
        conf[VALID_ATTACHMENTS_KEY] = listed
        conf[LEGACY_ATTACHMENTS_KEY] = listed
    return json.dumps(conf).encode()


def merged_capability_args(
    rt_caps: Mapping[str, Any], cached_caps: Mapping[str, Any]
) -> Mapping[str, Any]:
    """On DEL the caller may no longer know the ADD's capability args (e.g. after a
    restart); the cached ones fill in, the caller's win."""
    return {**cached_caps, **rt_caps}
