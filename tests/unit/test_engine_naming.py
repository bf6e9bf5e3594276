"""Docker names derived from CRI metadata: valid, recognisable, never shared."""

from __future__ import annotations

import re

import pytest

from shim.engine.naming import MAX_NAME, container_name, sandbox_name

DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def test_plain_names_keep_cri_dockerds_shape() -> None:
    assert sandbox_name("web-0", "default", "u-1", 2) == "k8s_POD_web-0_default_u-1_2"
    assert container_name("app", "web-0", "default", "u-1", 0) == "k8s_app_web-0_default_u-1_0"


@pytest.mark.parametrize(
    ("name", "namespace", "uid"),
    [
        ("PodSandbox-for-create-test-1b2c", "ns", "uid"),
        ("with space", "ns", "uid"),
        ("ünï/côde", "ns:x", "a b"),
        ("x" * 253, "y" * 253, "z" * 253),
    ],
)
def test_any_cri_name_gives_a_valid_docker_name(name: str, namespace: str, uid: str) -> None:
    got = sandbox_name(name, namespace, uid, 0)
    assert DOCKER_NAME.fullmatch(got)
    assert len(got) <= MAX_NAME


def test_replaced_characters_never_collide() -> None:
    assert sandbox_name("a b", "n", "u", 0) != sandbox_name("a-b", "n", "u", 0)
    assert sandbox_name("a b", "n", "u", 0) != sandbox_name("a/b", "n", "u", 0)
    # The separator inside a part would otherwise make two pods meet.
    assert sandbox_name("a_b", "c", "u", 0) != sandbox_name("a", "b_c", "u", 0)


def test_long_names_differ_in_their_tail() -> None:
    a = sandbox_name("x" * 300 + "a", "n", "u", 0)
    b = sandbox_name("x" * 300 + "b", "n", "u", 0)
    assert a != b and len(a) == len(b) == MAX_NAME
