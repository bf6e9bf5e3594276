"""`--config FILE`: the same settings as the flags, from a TOML file (stdlib `tomllib`).

Keys are the flags' names without the leading dashes, spelt with dashes or underscores
(`container-runtime-endpoint` or `container_runtime_endpoint`). A switch such as
`--no-cni-warm-plugins` is either that key set to a boolean or its destination
(`cni-warm-plugins = false`). `cni-bin-dir` may be a list of directories. The values become the
parser's defaults, so a flag on the command line wins over the file.

YAML is not read: the stdlib has no YAML parser and PyYAML is not a dependency of cri-shim.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass
from typing import Any

# Options that belong to the command line only.
COMMAND_LINE_ONLY = {"help", "version", "config"}
# Flags whose value is a comma-separated list; the file may give a list instead.
LIST_FLAGS = {"cni_bin_dir"}


class ConfigFileError(ValueError):
    pass


@dataclass(frozen=True)
class _Setting:
    action: argparse.Action
    # True when the key names a switch itself (`no-cni-warm-plugins`): `true` stores the
    # switch's constant; False when it names the destination (`cni-warm-plugins`).
    is_switch: bool


def _settings(parser: argparse.ArgumentParser) -> dict[str, _Setting]:
    """Every key the file may hold, in its underscore spelling."""
    settings: dict[str, _Setting] = {}
    for action in parser._actions:
        if action.dest in COMMAND_LINE_ONLY or not action.option_strings:
            continue
        switch = action.nargs == 0
        for option in action.option_strings:
            if option.startswith("--"):
                settings[option[2:].replace("-", "_")] = _Setting(action, switch)
        if switch:
            settings.setdefault(action.dest, _Setting(action, False))
    return settings


def load_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The parser defaults (`dest` → value) that the TOML file at `path` sets. Raises
    ConfigFileError naming the file and the key for an unknown key or a value of the wrong
    type."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as err:
        raise ConfigFileError(f"cannot read config file {path}: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"config file {path} is not valid TOML: {err}") from err
    settings = _settings(parser)
    defaults: dict[str, Any] = {}
    for key, value in document.items():
        setting = settings.get(key.replace("-", "_"))
        if setting is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in settings))
            raise ConfigFileError(f"config file {path}: unknown key {key!r} (known keys: {known})")
        try:
            dest, converted = _convert(setting, value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
            raise ConfigFileError(f"config file {path}: key {key!r}: {err}") from err
        if dest in defaults and defaults[dest] != converted:
            raise ConfigFileError(f"config file {path}: key {key!r} contradicts another key")
        defaults[dest] = converted
    return defaults


def _convert(setting: _Setting, value: Any) -> tuple[str, Any]:
    action = setting.action
    if action.nargs == 0:  # a switch: store_true / store_false
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {_describe(value)}")
        if setting.is_switch:
            return action.dest, action.const if value else action.default
        return action.dest, value
    if action.dest in LIST_FLAGS and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise TypeError("expected a list of strings")
        value = ",".join(value)
    converted = _typed(action, value)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(repr(c) for c in action.choices)
        raise ValueError(f"{converted!r} is not one of {choices}")
    return action.dest, converted


def _typed(action: argparse.Action, value: Any) -> Any:
    kind = action.type
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {_describe(value)}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_describe(value)}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if callable(kind):
        return kind(value)  # a flag's own parser (argparse type=) checks the string
    return value


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
