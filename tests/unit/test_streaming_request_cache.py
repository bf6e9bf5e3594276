"""The one-time tokens behind streaming URLs: random, single use, a minute, bounded."""

from __future__ import annotations

import re

import grpc
import pytest

from shim.errors import ResourceExhaustedError
from shim.streaming.request_cache import ExecTarget, PortForwardTarget, RequestCache

TARGET = ExecTarget("c" * 64, ("sh",), tty=False, stdin=True, stdout=True, stderr=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_eight_url_safe_characters_and_random() -> None:
    cache = RequestCache()
    tokens = {cache.insert(TARGET) for _ in range(200)}
    assert len(tokens) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{8}", t) for t in tokens)


def test_a_token_is_used_once() -> None:
    cache = RequestCache()
    token = cache.insert(TARGET)
    assert cache.consume(token) == TARGET
    assert cache.consume(token) is None
    assert cache.consume("unknown!") is None


def test_a_token_expires_after_its_ttl() -> None:
    clock = Clock()
    cache = RequestCache(ttl=60, clock=clock)
    early, late = cache.insert(TARGET), None
    clock.now += 59.9
    assert cache.consume(early) == TARGET
    late = cache.insert(PortForwardTarget("s", "/ns", (80,)))
    clock.now += 60.0
    assert cache.consume(late) is None
    assert len(cache) == 0


def test_full_cache_is_resource_exhausted_until_tokens_expire() -> None:
    clock = Clock()
    cache = RequestCache(ttl=60, limit=3, clock=clock)
    for _ in range(3):
        cache.insert(TARGET)
    with pytest.raises(ResourceExhaustedError, match="3 are already waiting") as caught:
        cache.insert(TARGET)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    clock.now += 61
    cache.insert(TARGET)  # the expired ones made room
    assert len(cache) == 1


def test_consuming_frees_a_slot() -> None:
    cache = RequestCache(limit=1)
    cache.consume(cache.insert(TARGET))
    cache.insert(TARGET)
