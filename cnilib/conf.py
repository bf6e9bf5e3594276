"""Loading and validating network configuration lists (spec section "Configuration format").

Every rejection is a ConfigError naming the file, the field and the reason, because the
person reading it is an operator who has to fix that file. Unknown fields are kept
untouched in `raw`: plugins may define any key they like.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from cnilib.errors import ConfigError
from cnilib.types import NetworkConfig, NetworkConfigList
from cnilib.version import highest, is_supported, parse_version

CONF_EXTENSIONS = (".conf", ".conflist", ".json")

# Spec: network names (and container ids) start with an alphanumeric character and
# continue with alphanumerics, '_', '.' or '-'.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")

# strconv.ParseBool's spellings: libcni parses the string form of disableCheck/disableGC
# with it, so files written for Go runtimes must mean the same thing here.
_TRUE_STRINGS = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE_STRINGS = {"0", "f", "F", "false", "FALSE", "False"}


def conf_files(conf_dir: str) -> list[str]:
    """Paths of every entry in `conf_dir` named like a configuration file, sorted by name.
    Entries that are not regular files are listed too: loading one fails with a reason, so a
    runtime reports it among the skipped files instead of passing over it silently."""
    try:
        names = os.listdir(conf_dir)
    except FileNotFoundError:
        return []
    return [os.path.join(conf_dir, n) for n in sorted(names) if n.endswith(CONF_EXTENSIONS)]


def load_conf_list(path: str) -> NetworkConfigList:
    """Load one file; a single-plugin config (no `plugins` key) is promoted to a list."""
    try:
        # Before opening: opening a FIFO would block until someone writes to it.
        mode = os.stat(path).st_mode
    except OSError as err:
        raise ConfigError(path, "", f"cannot be read: {err.strerror}") from err
    if not stat.S_ISREG(mode):
        raise ConfigError(path, "", f"is not a regular file (it is a {_kind(mode)})")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ConfigError(path, "", f"cannot be read: {err.strerror}") from err
    obj = _decode(data, path)
    if "plugins" in obj or path.endswith(".conflist"):
        return _parse_list(obj, data, path)
    return _promote(obj, path)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def parse_conf_list(data: bytes, source: str = "") -> NetworkConfigList:
    """Parse the bytes of a configuration list (with a `plugins` array)."""
    return _parse_list(_decode(data, source), data, source)


def parse_conf(data: bytes, source: str = "") -> NetworkConfigList:
    """Parse either form: a list, or a single plugin config promoted to a list."""
    obj = _decode(data, source)
    if "plugins" in obj:
        return _parse_list(obj, data, source)
    return _promote(obj, source)


def as_conf_list_bytes(data: bytes) -> bytes:
    """`data` as the bytes of a configuration list: a single-plugin config is promoted.

    libcni's AddNetwork (a `.conf` file run on its own) caches the plugin's config itself,
    not a list; whoever reads the cache as lists (GC of networks no longer in the conf dir)
    would otherwise skip those attachments. Anything that is not a promotable config is
    returned unchanged, for the caller's parser to reject with its own message.
    """
    try:
        obj = _decode(data, "")
    except ConfigError:
        return data
    if "plugins" in obj:
        return data
    try:
        return _promote(obj, "").bytes
    except ConfigError:
        return data


def find_conf_list(conf_dir: str, name: str | None = None) -> NetworkConfigList:
    """The first valid config in `conf_dir` (by file name), or the one named `name`.

    Invalid files are skipped, as the runtime-side convention says ("take the first
    valid"); if nothing matches, the error lists why each file was skipped.
    """
    problems: list[str] = []
    for path in conf_files(conf_dir):
        try:
            conf = load_conf_list(path)
        except ConfigError as err:
            problems.append(str(err))
            continue
        if name is None or conf.name == name:
            return conf
    wanted = f"network {name!r}" if name else "a valid network configuration"
    why = "; ".join(problems) if problems else "no .conf/.conflist/.json file matched"
    raise ConfigError(conf_dir, "", f"has no {wanted}: {why}")


def _decode(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(source, "", f"is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise ConfigError(source, "", "must be a JSON object")
    return obj


def _promote(obj: dict[str, Any], source: str) -> NetworkConfigList:
    # libcni's ConfListFromConf: a list named like the plugin, same version, one plugin.
    for key in ("name", "cniVersion"):
        if key not in obj:
            raise ConfigError(source, key, "is missing")
    raw = {"cniVersion": obj["cniVersion"], "name": obj["name"], "plugins": [obj]}
    for key in ("cniVersions", "disableCheck", "disableGC"):
        if key in obj:
            raw[key] = obj[key]
    data = json.dumps(raw).encode()
    return _parse_list(raw, data, source)


def _parse_list(obj: dict[str, Any], data: bytes, source: str) -> NetworkConfigList:
    name = obj.get("name")
    if name is None:
        raise ConfigError(source, "name", "is missing")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(source, "name", f"{name!r} must match {NAME_PATTERN.pattern}")
    chosen, versions = _choose_version(obj, source)
    plugins_raw = obj.get("plugins")
    if plugins_raw is None:
        raise ConfigError(source, "plugins", "is missing")
    if not isinstance(plugins_raw, list):
        raise ConfigError(source, "plugins", "must be a list")
    if not plugins_raw:
        raise ConfigError(source, "plugins", "must not be empty")
    plugins = [_parse_plugin(p, i, source) for i, p in enumerate(plugins_raw)]
    return NetworkConfigList(
        name=name,
        cni_version=chosen,
        cni_versions=versions,
        disable_check=_parse_bool(obj, "disableCheck", source),
        disable_gc=_parse_bool(obj, "disableGC", source),
        plugins=plugins,
        raw=obj,
        bytes=data,
        source=source,
    )


def _choose_version(obj: dict[str, Any], source: str) -> tuple[str, list[str]]:
    """Pick the highest version this library supports out of cniVersion + cniVersions.

    Spec 1.1: `cniVersions` lists alternatives; versions newer than the runtime knows
    are skipped, not fatal, so a file can serve old and new runtimes alike.
    """
    candidates: list[str] = []
    declared = obj.get("cniVersion")
    if declared is not None:
        candidates.append(_valid_version(declared, "cniVersion", source))
    listed: list[str] = []
    if "cniVersions" in obj:
        raw_list = obj["cniVersions"]
        if not isinstance(raw_list, list):
            raise ConfigError(source, "cniVersions", "must be a list of version strings")
        for i, entry in enumerate(raw_list):
            listed.append(_valid_version(entry, f"cniVersions[{i}]", source))
        candidates.extend(listed)
    if not candidates:
        raise ConfigError(source, "cniVersion", "is missing")
    usable = [v for v in candidates if is_supported(v)]
    chosen = highest(usable)
    if chosen is None:
        field = "cniVersions" if listed else "cniVersion"
        raise ConfigError(
            source, field, f"names no version this runtime supports ({', '.join(candidates)})"
        )
    return chosen, listed


def _valid_version(value: Any, field: str, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, field, f"{value!r} must be a version string")
    try:
        parse_version(value)
    except ValueError as err:
        raise ConfigError(source, field, str(err)) from err
    return value


def _parse_plugin(obj: Any, index: int, source: str) -> NetworkConfig:
    where = f"plugins[{index}]"
    if not isinstance(obj, dict):
        raise ConfigError(source, where, "must be a JSON object")
    plugin_type = obj.get("type")
    if plugin_type is None:
        raise ConfigError(source, f"{where}.type", "is missing")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise ConfigError(source, f"{where}.type", f"{plugin_type!r} must be a non-empty string")
    # A type is a file name looked up in CNI_PATH; a separator would escape those dirs.
    if "/" in plugin_type or "\\" in plugin_type or plugin_type in (".", ".."):
        raise ConfigError(
            source, f"{where}.type", f"{plugin_type!r} must be a plain name, not a path"
        )
    caps = obj.get("capabilities", {})
    if not isinstance(caps, dict) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in caps.items()
    ):
        raise ConfigError(
            source, f"{where}.capabilities", "must be an object of capability names to booleans"
        )
    return NetworkConfig(type=plugin_type, raw=obj, capabilities=dict(caps))


def _parse_bool(obj: dict[str, Any], key: str, source: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE_STRINGS:
            return True
        if value in _FALSE_STRINGS:
            return False
    raise ConfigError(source, key, f'{value!r} must be a boolean or "true"/"false"')
