"""Copying each container's Docker log journal into its CRI log file: followers and owner.

One thread per container (the CRI half of the shim is threaded; no event loop here) reads
`GET /containers/{id}/logs?follow=1` (`shim.engine.docker_logs`), turns entries into CRI lines
(`CriLogWriter`) and appends them to the file kubelet reads, one `write` per network read.

The contract with the RPCs (CRI-CONTAINERS.md §2.5 option A):
- StartContainer calls `prepare` *before* `docker start`, so the file exists when the RPC returns
  (kubelet links `/var/log/containers/...` only if it does), then `follow`.
- ContainerStatus reports EXITED only once `wait_complete` is true: the file then holds every line
  (containerd likewise waits for its IO copy before a task is reported exited).
- ReopenContainerLog calls `reopen`: after kubelet renamed the file, a new one is opened at the
  same path and swapped in under the writer's lock before the RPC returns.
- RemoveContainer calls `forget`; the shim's exit calls `close`.
- At start-up the shim calls `follow` for running containers and `drain` for exited ones; both
  resume after what the file already holds (`shim.container.log_resume`), so a shim killed with
  SIGKILL neither loses nor repeats a line.

A follow stream that ends while the container still runs, breaks, or stalls is re-opened with
`since` the resume point of what was written, through the same de-duplication. A stall (moby#37646
/ #39235: follows that stop after json-file rotation) is what one watchdog thread looks for: a
follower that received nothing for a whole `watch_interval` while the container's json-file grew
or rotated. Quiet followers are left alone — re-opening costs dockerd a scan of the whole journal
up to `since` (about 1.6 s for 40 MB here).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass

import docker
import docker.errors

from shim.container.log_resume import TAIL_LINES, ReplayFilter, ResumePoint, read_file_tail
from shim.container.log_writer import CriLogWriter
from shim.engine.docker_logs import STREAM_ERRORS, DockerLogStream
from shim.errors import FailedPreconditionError, ShimError

log = logging.getLogger(__name__)

LOG_FILE_MODE = 0o640
WATCH_INTERVAL = 10.0
JOIN_TIMEOUT = 5.0
MAX_BACKOFF = 5.0


class _End(enum.Enum):
    """How one read of the journal ended."""

    CLEAN = "clean"  # Docker ended the response
    IDLE = "idle"  # nothing arrived for the stream's read timeout
    BACKWARDS = "backwards"  # Docker sent older entries again
    BROKEN = "broken"  # connection or framing error


class LogNotFollowedError(FailedPreconditionError):
    """ReopenContainerLog on a container whose log nobody is writing (not running)."""


class LogFollowersClosedError(FailedPreconditionError):
    """The shim is shutting down."""


class LogFileError(ShimError):
    """The CRI log file could not be created or opened."""


@dataclass(frozen=True)
class FollowerStats:
    """Counters of one follower (for metrics): what reached the CRI file, and how often the
    Docker stream had to be re-opened."""

    lines_written: int
    bytes_written: int
    refollows: int
    write_errors: int
    complete: bool


def open_log_file(path: str, container_id: str) -> int:
    """`O_CREAT|O_APPEND|O_WRONLY` 0640 with the parent directory, as containerd opens it."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY | os.O_CLOEXEC, LOG_FILE_MODE)
    except OSError as err:
        raise LogFileError(
            f"failed to open log file {path} for container {container_id}: {err}"
        ) from err


class _Follower:
    """One container's file and thread. `lock` serialises writes with `reopen`'s fd swap."""

    def __init__(self, container_id: str, path: str, fd: int) -> None:
        self.container_id = container_id
        self.path = path
        self.lock = threading.Lock()
        self.fd: int | None = fd
        self.thread: threading.Thread | None = None
        self.stream: DockerLogStream | None = None
        self.stop = threading.Event()
        self.complete = threading.Event()
        self.recent: deque[bytes] = deque(maxlen=TAIL_LINES)
        self.lines_written = 0
        self.bytes_written = 0
        self.refollows = 0
        self.write_errors = 0
        # Watchdog state: batches received, and what the watchdog saw at its last look.
        self.received = 0
        self.journal_path: str | None = None
        self.watch_mark: tuple[int, tuple[int, int]] | None = None

    def write(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        with self.lock:
            fd = self.fd
            if fd is None:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as err:
                self.write_errors += 1
                if self.write_errors == 1 or self.write_errors % 1000 == 0:
                    log.error(
                        "failed to write log file %s of container %s: %s (%d failed writes)",
                        self.path,
                        self.container_id,
                        err,
                        self.write_errors,
                    )
                return
        self.lines_written += len(lines)
        self.bytes_written += len(data)
        self.recent.extend(lines)

    def close_file(self) -> None:
        with self.lock:
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class LogFollowers:
    """The owner of every container's log follower; `close()` is idempotent."""

    def __init__(self, client: docker.APIClient, *, watch_interval: float = WATCH_INTERVAL) -> None:
        self._client = client
        self._watch_interval = watch_interval
        self._lock = threading.Lock()
        self._followers: dict[str, _Follower] = {}
        self._closed = False
        self._watch_stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # ---- the RPCs' side -------------------------------------------------------------------

    def prepare(self, container_id: str, path: str) -> None:
        """Create the CRI log file now (StartContainer, before `docker start`)."""
        with self._lock:
            self._check_open()
            old = self._followers.get(container_id)
            if old is not None and old.thread is not None:
                raise FailedPreconditionError(
                    f"failed to prepare the log of container {container_id}: already followed"
                )
            follower = _Follower(container_id, path, open_log_file(path, container_id))
            self._followers[container_id] = follower
        if old is not None:
            old.close_file()

    def follow(self, container_id: str, path: str, tty: bool) -> None:
        """Copy the journal into `path` until the container exits (after `docker start`, and at
        start-up for running containers). A second call for the same container is a no-op."""
        self._start(container_id, path, tty, follow=True)

    def drain(self, container_id: str, path: str, tty: bool) -> None:
        """Copy what the journal holds and stop (containers found exited at start-up)."""
        self._start(container_id, path, tty, follow=False)

    def wait_complete(self, container_id: str, timeout: float) -> bool:
        """True once the follower read the journal to its end and wrote everything; also true
        for containers without a running follower (nothing is pending for them)."""
        with self._lock:
            follower = self._followers.get(container_id)
        if follower is None or follower.thread is None:
            return True
        return follower.complete.wait(timeout)

    def reopen(self, container_id: str) -> None:
        """A new file at the same path, in use before this returns (kubelet renamed the old one
        for rotation); the old file is closed and gets no more lines."""
        with self._lock:
            self._check_open()
            follower = self._followers.get(container_id)
        if follower is None or follower.thread is None or follower.complete.is_set():
            raise LogNotFollowedError(
                f"failed to reopen the log of container {container_id}: container is not running"
            )
        fd = open_log_file(follower.path, container_id)
        with follower.lock:
            old, follower.fd = follower.fd, fd
        if old is not None:
            os.close(old)
        log.info("reopened log file %s of container %s", follower.path, container_id)

    def forget(self, container_id: str) -> None:
        """Stop the follower and close its file (RemoveContainer); unknown ids are fine."""
        with self._lock:
            follower = self._followers.pop(container_id, None)
        if follower is not None:
            _stop([follower])

    def close(self) -> None:
        """Stop every follower (shim exit). Unfinished lines are not flushed as P: the next
        start re-reads them from the journal."""
        with self._lock:
            self._closed = True
            followers = list(self._followers.values())
            self._followers.clear()
            watchdog, self._watchdog = self._watchdog, None
        self._watch_stop.set()
        _stop(followers)
        if watchdog is not None:
            watchdog.join(JOIN_TIMEOUT)

    def stats(self, container_id: str) -> FollowerStats | None:
        with self._lock:
            f = self._followers.get(container_id)
        if f is None:
            return None
        return FollowerStats(
            f.lines_written, f.bytes_written, f.refollows, f.write_errors, f.complete.is_set()
        )

    # ---- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogFollowersClosedError("the log followers are shut down")

    def _start(self, container_id: str, path: str, tty: bool, follow: bool) -> None:
        with self._lock:
            self._check_open()
            follower = self._followers.get(container_id)
            if follower is not None and follower.thread is not None:
                return
            if follower is None or follower.path != path:
                old = follower
                follower = _Follower(container_id, path, open_log_file(path, container_id))
                self._followers[container_id] = follower
                if old is not None:
                    old.close_file()
            follower.thread = threading.Thread(
                target=self._run,
                args=(follower, tty, follow),
                name=f"log-{container_id[:12]}",
                daemon=True,
            )
            follower.thread.start()
            if follow and self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch, name="log-watchdog", daemon=True
                )
                self._watchdog.start()

    def _run(self, follower: _Follower, tty: bool, follow: bool) -> None:
        try:
            point = self._resume_point_from_file(follower)
            self._copy(follower, point, tty, follow)
        except Exception:
            log.exception("log follower of container %s failed", follower.container_id)
            # A dead follower must not hold ContainerStatus in wait_complete forever.
            follower.complete.set()

    @staticmethod
    def _resume_point_from_file(follower: _Follower) -> ResumePoint:
        lines, whole = read_file_tail(follower.path)
        with follower.lock:
            fd = follower.fd
            if fd is not None and os.fstat(fd).st_size > whole:
                # A write torn by a kill: drop the torn line, it is replayed whole.
                log.info("log file %s ends in a torn line; cutting it", follower.path)
                os.ftruncate(fd, whole)
        return ResumePoint.from_lines(lines) or ResumePoint()

    def _copy(self, follower: _Follower, point: ResumePoint, tty: bool, follow: bool) -> None:
        """Read sessions until the journal is copied to its end; each new session resumes at
        `point`, the resume point of what the file holds."""
        cid = follower.container_id
        backoff = 0.1
        check_order = True
        while not follower.stop.is_set():
            writer = CriLogWriter()
            replay = ReplayFilter(point)
            try:
                stream = DockerLogStream(
                    self._client,
                    cid,
                    follow=follow,
                    tty=tty,
                    since_ns=point.since_ns,
                )
            except docker.errors.NotFound:
                log.info("container %s is gone; its log ends here", cid)
                follower.complete.set()
                return
            except STREAM_ERRORS as err:
                log.warning("failed to open the docker log of container %s: %s", cid, err)
                follower.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            written = follower.lines_written
            end = self._pump(follower, stream, writer, replay, check_order)
            if follower.stop.is_set():
                return
            if end is _End.CLEAN and not follow:
                out = replay.filter(writer.finish())
                if out:
                    follower.write(out)
                log.debug("log of container %s complete: %d lines", cid, follower.lines_written)
                follower.complete.set()
                return
            if replay.done:
                point = (
                    ResumePoint.from_lines(list(follower.recent), writer.pending_since()) or point
                )
            if end is _End.CLEAN and not self._still_running(cid):
                # Docker 20.10 ends a follow early when json-file rotates (moby#37646, #39235;
                # seen here: 400k fast lines, the follow stopped at the rotation). A plain read
                # walks the rotated files too, so the end is always read once more without follow.
                follow = False
                continue
            # Broken, stalled, gone back in time, or ended while the container runs: resume
            # after what is written.
            follower.refollows += 1
            # A second step back at the same place is the clock, not Docker: accept it once.
            check_order = end is not _End.BACKWARDS or follower.lines_written > written
            if end is _End.BROKEN:
                follower.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                backoff = 0.1

    @staticmethod
    def _pump(
        follower: _Follower,
        stream: DockerLogStream,
        writer: CriLogWriter,
        replay: ReplayFilter,
        check_order: bool,
    ) -> _End:
        """One response: entries → CRI lines → the file, one write per network read.

        Within one stream Docker's stamps never decrease (one copier stamps it in order). A
        follow that re-reads a rotated json-file sends old entries again (seen here: 5688 lines
        repeated after a rotation), so a step back ends the session and the resume logic
        re-reads from what the file holds.
        """
        cid = follower.container_id
        with follower.lock:
            follower.stream = stream
            follower.watch_mark = None
        if follower.stop.is_set():
            stream.close()
            return _End.BROKEN
        last: dict[str, int] = {}
        backwards = False
        try:
            for batch in stream.batches():
                out: list[bytes] = []
                feed = writer.feed_into
                if check_order:
                    for entry in batch:
                        name, stamp, _ = entry
                        if stamp < last.get(name, 0):
                            backwards = True
                            break
                        last[name] = stamp
                        feed(out, *entry)
                else:
                    for entry in batch:
                        feed(out, *entry)
                if not replay.done:
                    out = replay.filter(out)
                if out:
                    follower.write(out)
                follower.received += 1
                if backwards:
                    log.warning(
                        "docker log stream of container %s went back in time; re-reading", cid
                    )
                    return _End.BACKWARDS
            return _End.CLEAN if stream.ended_cleanly else _End.BROKEN
        except TimeoutError:
            log.debug("log follow of container %s idle; re-opening", cid)
            return _End.IDLE
        except STREAM_ERRORS as err:
            if not follower.stop.is_set():
                log.warning("docker log stream of container %s broke: %s", cid, err)
            return _End.BROKEN
        finally:
            with follower.lock:
                follower.stream = None
            stream.close()

    def _watch(self) -> None:
        """The stall watchdog (see the module docstring); one thread for all followers."""
        while not self._watch_stop.wait(self._watch_interval):
            with self._lock:
                followers = list(self._followers.values())
            for follower in followers:
                try:
                    self._check_stall(follower)
                except Exception:
                    log.exception("log watchdog failed on container %s", follower.container_id)

    def _check_stall(self, follower: _Follower) -> None:
        with follower.lock:
            stream = follower.stream
        if stream is None or not stream.follow:
            return
        if follower.journal_path is None:
            try:
                follower.journal_path = str(
                    self._client.inspect_container(follower.container_id).get("LogPath") or ""
                )
            except STREAM_ERRORS:
                return
        try:
            st = os.stat(follower.journal_path)
            journal = (st.st_ino, st.st_size)
        except OSError:
            return  # no local json-file (another driver, remote engine): nothing to compare
        mark, follower.watch_mark = follower.watch_mark, (follower.received, journal)
        if mark is not None and mark[0] == follower.received and mark[1] != journal:
            log.warning(
                "docker log follow of container %s stalled (journal grew, nothing arrived); "
                "re-opening",
                follower.container_id,
            )
            stream.close()

    def _still_running(self, container_id: str) -> bool:
        try:
            state = self._client.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return False
        except STREAM_ERRORS as err:
            log.warning("failed to inspect container %s: %s", container_id, err)
            return True
        return bool(state.get("Running"))


def _stop(followers: list[_Follower]) -> None:
    """Signal all, then wait for each: shutting down N followers takes one timeout, not N."""
    for follower in followers:
        follower.stop.set()
        with follower.lock:
            stream = follower.stream
        if stream is not None:
            stream.close()
    for follower in followers:
        thread = follower.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("log follower of container %s did not stop", follower.container_id)
        follower.close_file()
