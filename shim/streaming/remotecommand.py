"""One exec or attach session, between a client transport (SPDY or WebSocket) and Docker.

The transport's reader thread calls `stdin`, `stdin_eof`, `resize` and, when the client is
gone, `abort`; the session's own pump thread copies Docker's output to the transport and, at
the end, writes the error stream's status and closes the transport (`Output.finish`). Either
side ending frees both: the pump ends when Docker's connection closes, and aborting closes it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Protocol

import docker

from shim.engine.stdcopy import Stream
from shim.errors import ShimError
from shim.streaming import status
from shim.streaming.docker_stream import (
    DockerStream,
    exec_exit_code,
    hang_up_exec,
    resize_container,
    resize_exec,
    start_attach,
    start_exec,
)
from shim.streaming.request_cache import AttachTarget, ExecTarget

log = logging.getLogger(__name__)

# A resize message is a few dozen bytes; a line longer than this is not one.
MAX_RESIZE_LINE = 4096


class Output(Protocol):
    """The client side, as the session writes to it (any thread, one writer at a time)."""

    def write(self, stream: Stream, data: bytes) -> None: ...

    def finish(self, error_payload: bytes) -> None:
        """Write `error_payload` (if any) on the error stream and end the connection."""
        ...

    def drop(self) -> None:
        """End the connection now: a write failed or timed out (a client that does not read),
        so nothing more can be said on it."""
        ...


class ResizeDecoder:
    """Newline-separated (SPDY) or one-per-message (WebSocket) `{"Width":w,"Height":h}`."""

    def __init__(self) -> None:
        self._line = b""

    def feed(self, data: bytes, message_end: bool = False) -> list[tuple[int, int]]:
        self._line += data
        sizes: list[tuple[int, int]] = []
        *lines, self._line = self._line.split(b"\n")
        if message_end and self._line:
            lines.append(self._line)
            self._line = b""
        if len(self._line) > MAX_RESIZE_LINE:
            raise ValueError("a resize message is too long")
        for line in lines:
            if line.strip():
                sizes.append(parse_size(line))
        return sizes


def parse_size(line: bytes) -> tuple[int, int]:
    try:
        value = json.loads(line)
        width, height = int(value["Width"]), int(value["Height"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"bad resize message {line[:100]!r}: {err}") from err
    if not (0 <= width <= 0xFFFF and 0 <= height <= 0xFFFF):
        raise ValueError(f"terminal size {width}x{height} out of range")
    return width, height


class RemoteCommandSession:
    def __init__(
        self,
        client: docker.APIClient,
        target: ExecTarget | AttachTarget,
        output: Output,
        structured_status: bool,
    ) -> None:
        self._client = client
        self._target = target
        self._output = output
        self._structured = structured_status
        self._stream: DockerStream | None = None
        self._exec_id = ""
        self._pump: threading.Thread | None = None
        self._aborted = threading.Event()
        # Docker ended the output: the process is done (or has closed its stdout and stderr).
        self._output_ended = threading.Event()

    @property
    def container_id(self) -> str:
        return self._target.container_id

    def start(self) -> None:
        """Start the Docker side; a failure is reported on the error stream, as kubelet does."""
        try:
            if isinstance(self._target, ExecTarget):
                self._exec_id, self._stream = start_exec(self._client, self._target)
            else:
                self._stream = start_attach(self._client, self._target)
        except ShimError as err:
            log.warning("streaming %s: %s", self._verb, err)
            self._output.finish(status.end_of_session(self._structured, (), None, str(err)))
            return
        self._pump = threading.Thread(
            target=self._copy_output, name=f"stream-{self._verb}", daemon=True
        )
        self._pump.start()

    @property
    def _verb(self) -> str:
        return "exec" if isinstance(self._target, ExecTarget) else "attach"

    def stdin(self, data: bytes) -> None:
        if self._stream is not None and self._target.stdin and data:
            try:
                self._stream.write_stdin(data)
            except OSError as err:
                log.debug("stdin of %s in %s dropped: %s", self._verb, self.container_id, err)

    def stdin_eof(self) -> None:
        if self._stream is None:
            return
        if isinstance(self._target, AttachTarget) and not self._target.stdin_once:
            # Docker would end the whole attach (its output too) on stdin's EOF; the
            # container's stdin stays open anyway, so keep the output coming as containerd
            # does, until the container or the client ends.
            return
        self._stream.close_stdin()

    def resize(self, width: int, height: int) -> None:
        if not self._target.tty or self._stream is None:
            return
        log.debug("%s in %s: resized to %dx%d", self._verb, self.container_id, width, height)
        if isinstance(self._target, ExecTarget):
            resize_exec(self._client, self._exec_id, width, height)
        else:
            resize_container(self._client, self.container_id, width, height)

    def abort(self) -> None:
        """The client is gone: close Docker's connection (the process sees its stdin end,
        a TTY is hung up) and wait for the pump."""
        self._aborted.set()
        # Read before closing: our own close also ends Docker's output.
        still_running = not self._output_ended.is_set()
        if self._stream is not None:
            self._stream.close()
        if still_running and isinstance(self._target, ExecTarget) and self._exec_id:
            hang_up_exec(self._client, self._exec_id, self.container_id)
        self.join()

    def join(self, timeout: float | None = 10) -> None:
        pump = self._pump
        if pump is not None and pump is not threading.current_thread():
            pump.join(timeout)

    def _copy_output(self) -> None:
        assert self._stream is not None
        error: str | None = None
        exit_code: int | None = None
        try:
            while True:
                pieces = self._stream.read()
                if not pieces:
                    if not self._aborted.is_set():
                        self._output_ended.set()
                    break
                for stream, data in pieces:
                    self._output.write(stream, data)
            if self._aborted.is_set():
                return
            if isinstance(self._target, ExecTarget):
                exit_code = exec_exit_code(self._client, self._exec_id, self.container_id)
        except ShimError as err:
            error = str(err)
        except OSError as err:  # the client's side of the connection failed
            log.info(
                "streaming %s in %s: dropped the client: %s", self._verb, self.container_id, err
            )
            self._output.drop()
            return
        finally:
            self._stream.close()
        if self._aborted.is_set():
            return
        cmd = self._target.cmd if isinstance(self._target, ExecTarget) else ()
        try:
            self._output.finish(status.end_of_session(self._structured, cmd, exit_code, error))
        except OSError as err:
            log.debug("streaming %s in %s: status not delivered: %s", self._verb, cmd, err)
