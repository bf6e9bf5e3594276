"""The `cri-shim` console script."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from netplugins.warm import WarmExecutor
from shim.config import ShimConfig, parse_args
from shim.container.log_follower import LogFollowers
from shim.context import PodCIDRs, ShimContext
from shim.engine import labels as L
from shim.engine.docker_engine import DockerInfraRuntime
from shim.engine_watch import EngineWatcher, EventStream
from shim.events.build import build_event
from shim.events.hub import ContainerEvents
from shim.leftover_plugins import kill_leftovers, mark_environment
from shim.logformat import configure_logging
from shim.metrics.docker import instrument as instrument_docker
from shim.metrics.logs import LogMetrics
from shim.metrics.registry import ShimMetrics
from shim.metrics.server import serve_metrics
from shim.oom import infra_oom_score_adj
from shim.sandbox.network import PodNetwork
from shim.server import build_server
from shim.single_instance import (
    AlreadyRunningError,
    RootLock,
    remove_own_socket,
    socket_answers,
    socket_identity,
)
from shim.socket_activation import (
    PRIVATE_SOCKET_NAME,
    SocketActivationError,
    SocketRelay,
    select_listener,
    take_listen_fds,
)
from shim.startup import StartUp
from shim.store.sandbox_store import SandboxStore
from shim.streaming.server import StreamingServer

log = logging.getLogger("shim")


def plugin_executor(config: ShimConfig) -> WarmExecutor | None:
    """Our own plugins (netplugins) run in a warm pre-forked worker: a cold Python exec costs
    ~150 ms per plugin. Any other plugin, or any failure to reach the worker, is exec'd."""
    if not config.cni_warm_plugins:
        return None
    return WarmExecutor(socket_path=os.path.join(config.root_directory, "netplugins-worker.sock"))


def prestart(executor: WarmExecutor) -> None:
    """Start the warm worker beside the server's start-up, so the first pod does not pay for
    it (~0.3 s); if it cannot start, plugins are exec'd and the pod still gets its network."""

    def start() -> None:
        try:
            executor.start()
        except Exception as err:  # the executor falls back to exec on its own
            log.warning("netplugins warm worker did not start, plugins will be exec'd: %s", err)

    threading.Thread(target=start, name="warm-worker-start", daemon=True).start()


def build_context(config: ShimConfig, executor: WarmExecutor | None) -> ShimContext:
    os.makedirs(config.root_directory, mode=0o700, exist_ok=True)
    pod_cidrs = PodCIDRs(os.path.join(config.root_directory, "pod-cidrs.json"))
    pod_cidrs.load()
    infra = DockerInfraRuntime(config.docker_endpoint, owner=os.path.abspath(config.root_directory))
    metrics = ShimMetrics()
    instrument_docker(infra.client, metrics)
    return ShimContext(
        config=config,
        store=SandboxStore(config.root_directory),
        infra=infra,
        logs=LogFollowers(infra.client, LogMetrics(metrics)),
        network=PodNetwork(
            config.cni_conf_dir,
            config.cni_bin_dirs,
            config.cni_cache_dir,
            config.cni_plugin_timeout,
            executor=executor,
            metrics=metrics,
        ),
        pod_cidrs=pod_cidrs,
        infra_oom_score_adj=infra_oom_score_adj(),
        metrics=metrics,
        events=ContainerEvents(
            buffer=config.container_events_buffer,
            on_sent=lambda event: metrics.count_event(event.container_event_type),
            on_dropped=metrics.container_events_dropped_subscribers.inc,
        ),
    )


def docker_events(ctx: ShimContext) -> Callable[[float], EventStream]:
    """Docker's event stream for this shim's containers, from `since` on."""
    client = ctx.infra.client
    owner = ctx.owner

    def subscribe(since: float) -> EventStream:
        stream: EventStream = client.events(
            since=int(since) - 1,  # whole seconds; replayed events are harmless (re-inspected)
            decode=True,
            filters={"type": "container", "label": f"{L.OWNER}={owner}"},
        )
        return stream

    return subscribe


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(config.log_level, config.log_format)
    try:
        # First, before any child is started: the fds become close-on-exec, LISTEN_* unset.
        listener = select_listener(take_listen_fds(), config.socket_path)
    except SocketActivationError as err:
        log.error("cri-shim cannot start: %s", err)
        return 1
    executor = plugin_executor(config)
    try:
        return serve(config, executor, listener)
    finally:
        if executor is not None:
            executor.stop()


def serve(
    config: ShimConfig, executor: WarmExecutor | None, listener: socket.socket | None = None
) -> int:
    os.makedirs(config.root_directory, mode=0o700, exist_ok=True)
    lock = RootLock(config.root_directory)
    try:
        lock.acquire()
        # An inherited socket answers by design: systemd holds it for us.
        if listener is None and socket_answers(config.socket_path):
            raise AlreadyRunningError(
                f"something already serves on {config.socket_path}: refusing to take it over"
            )
    except AlreadyRunningError as err:
        log.error("cri-shim cannot start: %s", err)
        lock.release()
        return 1
    try:
        # Before anything of ours runs a plugin: what a dead predecessor left running goes.
        kill_leftovers(config.root_directory)
        mark_environment(config.root_directory)
        return serve_locked(config, executor, listener)
    finally:
        lock.release()


def serve_locked(
    config: ShimConfig, executor: WarmExecutor | None, listener: socket.socket | None = None
) -> int:
    if executor is not None:
        prestart(executor)
    ctx = build_context(config, executor)
    try:
        return serve_context(ctx, listener)
    finally:
        ctx.logs.close()


def serve_context(ctx: ShimContext, listener: socket.socket | None = None) -> int:
    config = ctx.config
    try:
        metrics_server = serve_metrics(ctx)
    except OSError as err:
        log.error("cri-shim cannot serve metrics on %s: %s", config.metrics_address, err)
        return 1
    ctx.events.start(functools.partial(build_event, ctx))
    streaming = StreamingServer(config.streaming_bind_addr, ctx.infra.client)
    try:
        streaming.start()
    except OSError as err:
        log.error("cri-shim cannot serve streaming on %s: %s", config.streaming_bind_addr, err)
        return 1
    ctx.streaming = streaming  # before the RPCs that hand out its URLs can be called
    startup = StartUp(ctx, EngineWatcher(ctx, docker_events(ctx)))
    # Under socket activation gRPC listens privately and a relay serves the inherited socket
    # (shim.socket_activation says why), which is never removed: systemd owns it.
    served_path = config.socket_path
    if listener is not None:
        served_path = os.path.join(config.root_directory, PRIVATE_SOCKET_NAME)
    server = build_server(ctx, served_path)
    own_socket = socket_identity(served_path)
    relay = SocketRelay(listener, served_path) if listener is not None else None
    if relay is not None:
        relay.start()
    ctx.engine_health.start()
    startup.start()
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received signal %d, shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    if relay is not None:
        relay.stop_accepting()  # new callers wait in the backlog for the next cri-shim
    ctx.events.close()  # ends the event streams, which would hold the server's stop
    server.stop(grace=5).wait()
    streaming.close()  # ends every exec, attach and port-forward session
    if relay is not None:
        relay.close()
    startup.close()
    ctx.engine_health.close()
    if metrics_server is not None:
        metrics_server.close()
    with contextlib.suppress(FileNotFoundError):
        remove_own_socket(served_path, own_socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
