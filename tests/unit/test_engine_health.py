"""The Docker health verdict Status reads: fresh answers pass through, a ping that does not
come back is reported after STALE_S instead of blocking the caller."""

from __future__ import annotations

import threading
import time

from shim.engine_health import STALE_S, EngineHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_pinger_the_engine_is_asked_on_each_call() -> None:
    calls: list[int] = []
    health = EngineHealth(lambda: calls.append(1))
    assert health.error() is None
    assert health.error() is None
    assert len(calls) == 2


def test_a_failed_ping_is_the_error_and_a_later_answer_clears_it() -> None:
    failing = [True]

    def ping() -> None:
        if failing[0]:
            raise OSError("failed to reach the docker engine at unix:///nowhere")

    health = EngineHealth(ping)
    assert health.error() == "failed to reach the docker engine at unix:///nowhere"
    failing[0] = False
    assert health.error() is None


def test_a_running_pinger_answers_from_its_verdict_and_goes_stale_when_a_ping_hangs() -> None:
    clock = Clock()
    release = threading.Event()
    pings: list[float] = []

    def ping() -> None:
        pings.append(clock.now)
        if len(pings) > 1:
            release.wait()  # the engine stops answering after the first ping

    health = EngineHealth(ping, interval=0.01, clock=clock)
    health.start()
    try:
        deadline = time.monotonic() + 5
        while len(pings) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(pings) == 2  # the pinger now hangs in its second ping
        for _ in range(5):
            assert health.error() is None  # the first verdict, still fresh
        assert len(pings) == 2  # Status never asked the engine itself
        clock.now += STALE_S + 1
        error = health.error()
        assert error is not None and "has not answered a ping" in error
        assert len(pings) == 2
    finally:
        release.set()
        health.close()
