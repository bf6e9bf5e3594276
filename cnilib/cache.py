"""libcni's result cache, byte-compatible in structure (`kind: cniCacheV1`).

Place: `<cache dir>/results/<network>-<container id>-<ifname>`. Keeping libcni's exact
layout lets a Go runtime (or Go cnitool) and cnilib DEL each other's attachments, and
lets GC find attachments made before a restart. Writes are atomic (temp file, fsync,
rename, fsync dir) so a crash never leaves a half-written entry that blocks a DEL.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from cnilib.atomic import write_atomic
from cnilib.conf import as_conf_list_bytes
from cnilib.errors import CacheError, CNIError
from cnilib.types import CachedAttachment, Result, RuntimeConf

log = logging.getLogger(__name__)

CACHE_KIND = "cniCacheV1"
RESULTS_SUBDIR = "results"


@dataclass(frozen=True)
class CacheEntry:
    """A decoded cache file: the attachment plus its final ADD result (if readable)."""

    attachment: CachedAttachment
    result: Result | None


class ResultCache:
    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = cache_dir

    @property
    def results_dir(self) -> str:
        return os.path.join(self.cache_dir, RESULTS_SUBDIR)

    def path(self, net_name: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.results_dir, f"{net_name}-{container_id}-{ifname}")

    def write(self, net_name: str, rt: RuntimeConf, config: bytes, result: Result) -> None:
        """Record a successful ADD; CacheError if it cannot be made durable."""
        entry = encode_entry(net_name, rt, config, result)
        target = self.path(net_name, rt.container_id, rt.ifname)
        try:
            os.makedirs(self.results_dir, mode=0o700, exist_ok=True)
            write_atomic(target, entry)
        except OSError as err:
            raise CacheError(
                f"failed to write cached result {target}",
                str(err),
                context=f"failed to cache network {net_name} container {rt.container_id}",
            ) from err

    def read(self, net_name: str, container_id: str, ifname: str) -> CacheEntry | None:
        """The entry, or None when absent or unreadable (DEL must still proceed)."""
        target = self.path(net_name, container_id, ifname)
        try:
            with open(target, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("ignoring unreadable CNI cache file %s: %s", target, err)
            return None
        try:
            return decode_entry(data)
        except CNIError as err:
            log.warning("ignoring corrupt CNI cache file %s: %s", target, err)
            return None

    def delete(self, net_name: str, container_id: str, ifname: str) -> None:
        target = self.path(net_name, container_id, ifname)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        except OSError as err:
            raise CacheError(f"failed to remove cached result {target}", str(err)) from err

    def attachments(self, container_id: str = "") -> list[CachedAttachment]:
        """Every readable cniCacheV1 entry, sorted by file name (as libcni does)."""
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        found: list[CachedAttachment] = []
        for name in names:
            if name.startswith("."):
                continue  # our own in-flight temp files
            try:
                with open(os.path.join(self.results_dir, name), "rb") as handle:
                    entry = decode_entry(handle.read())
            except (OSError, CNIError):
                continue
            att = entry.attachment
            if container_id and att.container_id != container_id:
                continue
            if not att.ifname or not att.network_name:
                continue
            found.append(att)
        return found


def encode_entry(net_name: str, rt: RuntimeConf, config: bytes, result: Result) -> bytes:
    """Serialize like libcni's cachedInfo; empty optional fields are omitted like Go's
    `omitempty`, and `config` is base64 because Go encodes []byte that way."""
    obj: dict[str, Any] = {
        "kind": CACHE_KIND,
        "containerId": rt.container_id,
        "config": base64.b64encode(config).decode(),
        "ifName": rt.ifname,
        "networkName": net_name,
    }
    if rt.netns:
        obj["netns"] = rt.netns
    if rt.args:
        obj["cniArgs"] = [[k, v] for k, v in rt.args]
    if rt.capability_args:
        obj["capabilityArgs"] = dict(rt.capability_args)
    obj["result"] = result.to_dict()
    return json.dumps(obj).encode()


def decode_entry(data: bytes) -> CacheEntry:
    """Parse a cache file; CNIError when it is not a usable cniCacheV1 entry."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise CNIError("cache entry is not JSON", str(err)) from err
    if not isinstance(obj, dict) or obj.get("kind") != CACHE_KIND:
        raise CNIError("cache entry is not of kind cniCacheV1")
    try:
        config = base64.b64decode(obj.get("config") or "", validate=True)
        args = tuple((str(k), str(v)) for k, v in obj.get("cniArgs") or [])
    except (binascii.Error, TypeError, ValueError) as err:
        raise CNIError("cache entry has malformed fields", str(err)) from err
    caps = obj.get("capabilityArgs") or {}
    # Always a list's bytes (see as_conf_list_bytes): entries written by libcni's AddNetwork
    # hold a single plugin's config, and GC parses cached configs as lists.
    config = as_conf_list_bytes(config) if config else config
    attachment = CachedAttachment(
        container_id=str(obj.get("containerId", "")),
        ifname=str(obj.get("ifName", "")),
        network_name=str(obj.get("networkName", "")),
        netns=str(obj.get("netns", "")),
        config=config,
        args=args,
        capability_args=caps if isinstance(caps, dict) else {},
    )
    result: Result | None = None
    if obj.get("result"):
        try:
            result = Result.from_json(obj["result"])
        except CNIError as err:
            log.warning("cached result of %s is unusable: %s", attachment.container_id, err)
    return CacheEntry(attachment=attachment, result=result)
