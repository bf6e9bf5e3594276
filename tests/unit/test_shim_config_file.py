"""--help describes every flag with its default; --config FILE (TOML) sets the same keys as
the flags, the flags win, and a bad file is refused naming the file and the key."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator

import pytest

from shim.config import ShimConfig, build_parser, parse_args

COMMAND_LINE_ONLY = {"help", "version"}


def _flags() -> list[argparse.Action]:
    return [
        a for a in build_parser()._actions if a.option_strings and a.dest not in COMMAND_LINE_ONLY
    ]


def test_every_flag_has_a_description_and_shows_its_default() -> None:
    parser = build_parser()
    formatter = parser.formatter_class(prog="cri-shim")
    assert len(_flags()) >= 10
    for action in _flags():
        assert action.help and action.help.strip(), f"{action.option_strings} has no help"
        shown = formatter._get_help_string(action) or ""
        assert "default:" in shown, f"{action.option_strings} does not show its default"
        if "%(default)" in shown:
            assert str(action.default) in shown % {"default": action.default}


def test_help_text_names_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = ShimConfig()
    for value in (defaults.endpoint, defaults.cni_conf_dir, defaults.pod_infra_container_image):
        assert f"(default: {value})" in text
    assert "--log-format {text,json}" in text


@pytest.fixture
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="crishim-config-") as d:
        yield d


def _write(workdir: str, text: str, name: str = "cri-shim.toml") -> str:
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_file_sets_the_flags_keys_in_either_spelling(workdir: str) -> None:
    path = _write(
        workdir,
        """
container-runtime-endpoint = "unix:///tmp/x/cri.sock"
root_directory = "/tmp/x/root"
cni-bin-dir = ["/a", "/b"]
cni-plugin-timeout = 7
log-format = "json"
no-cni-warm-plugins = true
""",
    )
    config = parse_args(["--config", path])
    assert config == ShimConfig(
        endpoint="unix:///tmp/x/cri.sock",
        root_directory="/tmp/x/root",
        cni_bin_dirs=("/a", "/b"),
        cni_plugin_timeout=7.0,
        log_format="json",
        cni_warm_plugins=False,
    )


def test_flags_win_over_the_file(workdir: str) -> None:
    path = _write(
        workdir, 'log-level = "debug"\ncni-conf-dir = "/file"\ncni-warm-plugins = false\n'
    )
    config = parse_args(["--cni-conf-dir", "/flag", "--config", path])
    assert (config.cni_conf_dir, config.log_level, config.cni_warm_plugins) == (
        "/flag",
        "debug",
        False,
    )
    assert parse_args(["--config", path, "--cni-conf-dir=/flag"]).cni_conf_dir == "/flag"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('no-such-flag = "x"', "unknown key 'no-such-flag'"),
        ('version = "9"', "unknown key 'version'"),
        ('cni-plugin-timeout = "60"', "key 'cni-plugin-timeout': expected a number, got str '60'"),
        ("cni-plugin-timeout = true", "key 'cni-plugin-timeout': expected a number, got bool"),
        ("root-directory = 5", "key 'root-directory': expected a string, got int 5"),
        ('log-level = "loud"', "key 'log-level': 'loud' is not one of"),
        ('no-cni-warm-plugins = "yes"', "key 'no-cni-warm-plugins': expected true or false"),
        ("cni-bin-dir = [1]", "key 'cni-bin-dir': expected a list of strings"),
        ("cni-warm-plugins = true\nno-cni-warm-plugins = true", "contradicts another key"),
        ("log-level = ", "is not valid TOML"),
    ],
)
def test_bad_file_is_refused_naming_file_and_key(
    workdir: str, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _write(workdir, text)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--config", path])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert path in err
    assert message in err


def test_missing_file_is_refused(workdir: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(workdir, "absent.toml")
    with pytest.raises(SystemExit):
        parse_args(["--config", path])
    assert f"cannot read config file {path}: No such file or directory" in capsys.readouterr().err


def test_to_args_round_trips_the_log_format() -> None:
    config = ShimConfig(log_format="json")
    assert parse_args(config.to_args()) == config
