"""cnitool's environment handling (pure parts)."""

from __future__ import annotations

import hashlib
import io

import pytest

from cnilib.cli import (
    UsageError,
    container_id_for,
    parse_cap_args,
    parse_cni_args,
    run,
    runtime_conf,
)


def test_container_id_is_go_cnitools_hash_of_the_absolute_path() -> None:
    expected = "cnitool-" + hashlib.sha512(b"/var/run/netns/x").hexdigest()[:20]
    assert container_id_for("/var/run/netns/x") == expected
    assert len(expected) == len("cnitool-") + 20


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("A=1", (("A", "1"),)),
        ("IgnoreUnknown=1;K8S_POD_NAME=p", (("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p"))),
    ],
)
def test_cni_args_parse(text: str, pairs: tuple[tuple[str, str], ...]) -> None:
    assert parse_cni_args(text) == pairs


@pytest.mark.parametrize("text", ["A", "A=", "=1", "A=1;", "A=1=2", "A=1;;B=2"])
def test_bad_cni_args_refused(text: str) -> None:
    with pytest.raises(UsageError, match="invalid CNI_ARGS pair"):
        parse_cni_args(text)


@pytest.mark.parametrize(("text", "words"), [("{", "not valid JSON"), ("[1]", "JSON object")])
def test_bad_cap_args_refused(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_cap_args(text)


def test_runtime_conf_defaults_and_overrides() -> None:
    rt = runtime_conf("/var/run/netns/x", {})
    assert rt.container_id == container_id_for("/var/run/netns/x")
    assert rt.ifname == "eth0"
    assert rt.args == ()
    assert rt.capability_args == {}
    rt = runtime_conf(
        "/var/run/netns/x",
        {
            "CNI_CONTAINERID": "mine",
            "CNI_IFNAME": "net1",
            "CNI_ARGS": "A=1",
            "CAP_ARGS": '{"mac": "aa:bb:cc:dd:ee:ff"}',
        },
    )
    assert (rt.container_id, rt.ifname, rt.args) == ("mine", "net1", (("A", "1"),))
    assert rt.capability_args == {"mac": "aa:bb:cc:dd:ee:ff"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "usage"),
        (["frobnicate", "n", "/x"], "usage"),
        (["add"], "usage"),
        (["add", "net"], "needs a netns path"),
        (["del", "net"], "needs a netns path"),
    ],
)
def test_usage_errors(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        run(argv, {}, io.StringIO())
