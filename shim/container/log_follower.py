"""Copying each container's Docker log journal into its CRI log file: followers and owner.

One thread per container (the CRI half of the shim is threaded; no event loop here) reads the
container's json-file journal from Docker's files (`shim.engine.docker_journal`), turns entries
into CRI lines (`CriLogWriter`) and appends them to the file kubelet reads, one `write` per read
of up to 1 MiB of journal. Reading the files, not `GET /containers/{id}/logs`: dockerd serves its
logs API at ~20 MB/s at best (it decodes and re-encodes every entry), a busy container writes
faster, and the journal rotated whole files away before the follow got to them (45% of 2M lines
lost, silently). An open fd keeps a rotated file readable, so now only a reader that misses every
rotated file between two looks loses lines, and that is counted (`lost_files`) and logged.

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

When the log ends: a follower at the end of the journal asks Docker whether the container still
runs — soon after output stopped, then less and less often (a quiet container costs little), and
at once when `wait_complete` is called, which ContainerStatus does when Docker reports the exit.
Once Docker says it is not running, the journal is complete (moby's `handleContainerExit` waits
for the log copier and closes the log driver in `Container.Reset`, before `SetStopped`), so the
follower reads every file to its end once more and finishes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
import requests

from shim.container.log_resume import TAIL_LINES, ReplayFilter, ResumePoint, read_file_tail
from shim.container.log_writer import CriLogWriter
from shim.engine.docker_journal import JsonFileJournal, JsonLogDecoder
from shim.engine.inotify import DirWatcher
from shim.errors import FailedPreconditionError, ShimError

log = logging.getLogger(__name__)

LOG_FILE_MODE = 0o640
# Called with each batch of CRI lines just written to a file (from the follower's thread).
LinesObserver = Callable[[list[bytes]], None]
JOIN_TIMEOUT = 5.0
# At the end of the journal: look for new output after MIN_POLL_S, doubling up to MAX_POLL_S.
MIN_POLL_S = 0.01
MAX_POLL_S = 0.5
WATCHED_POLL_S = 5.0  # the same, while inotify watches the journal's directory
# Ask Docker whether the container runs this long after output stopped, doubling up to the max.
# Only a safety net: Docker's "die" event reaches the follower through notify_exited, so an
# idle container costs no inspect every few seconds (220 of them would be 20 inspects a second):
# one look every five minutes is the safety net for a missed event.
MIN_INSPECT_S = 0.5
MAX_INSPECT_S = 300.0
# `wait_complete` asks for a look now; not more often than this.
POKE_MIN_S = 0.02

INSPECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    requests.exceptions.RequestException,
    docker.errors.DockerException,
)


class LogNotFollowedError(FailedPreconditionError):
    """ReopenContainerLog on a container whose log nobody is writing (not running)."""


class LogFollowersClosedError(FailedPreconditionError):
    """The shim is shutting down."""


class LogFileError(ShimError):
    """The CRI log file could not be created or opened."""


@dataclass(frozen=True)
class FollowerStats:
    """Counters of one follower (for metrics): what reached the CRI file, how many journal
    rotations it followed, and how many journal files went before it could read them."""

    lines_written: int
    bytes_written: int
    rotations: int
    lost_files: int
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

    def __init__(
        self, container_id: str, path: str, fd: int, observer: LinesObserver | None = None
    ) -> None:
        self.container_id = container_id
        self.observer = observer
        self.path = path
        self.lock = threading.Lock()
        self.fd: int | None = fd
        self.thread: threading.Thread | None = None
        self.journal: JsonFileJournal | None = None
        self.stop = threading.Event()
        # Set by `stop`, by `wait_complete`/`notify_exited` (with `poked`: ask Docker too) and
        # by the inotify watcher when the journal's directory changes: look now.
        self.wake = threading.Event()
        self.poked = False
        self.complete = threading.Event()
        self.recent: deque[bytes] = deque(maxlen=TAIL_LINES)
        self.lines_written = 0
        self.bytes_written = 0
        self.write_errors = 0

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
        self.recent.extend(lines[-TAIL_LINES:])
        if self.observer is not None:
            self.observer(lines)

    def close_file(self) -> None:
        with self.lock:
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class LogFollowers:
    """The owner of every container's log follower; `close()` is idempotent."""

    def __init__(self, client: docker.APIClient, observer: LinesObserver | None = None) -> None:
        self._client = client
        self._observer = observer  # told of every batch of lines written (metrics)
        self._lock = threading.Lock()
        self._followers: dict[str, _Follower] = {}
        self._closed = False
        self._dirs = DirWatcher()

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
            fd = open_log_file(path, container_id)
            follower = _Follower(container_id, path, fd, self._observer)
            self._followers[container_id] = follower
        if old is not None:
            old.close_file()

    def follow(self, container_id: str, path: str, tty: bool) -> None:
        """Copy the journal into `path` until the container exits (after `docker start`, and at
        start-up for running containers). A second call for the same container is a no-op.
        `tty` does not matter to the json-file journal (TTY output is its stdout entries)."""
        self._start(container_id, path, follow=True)

    def drain(self, container_id: str, path: str, tty: bool) -> None:
        """Copy what the journal holds and stop (containers found exited at start-up)."""
        self._start(container_id, path, follow=False)

    def wait_complete(self, container_id: str, timeout: float) -> bool:
        """True once the follower read the journal to its end and wrote everything; also true
        for containers without a running follower (nothing is pending for them). Callers ask
        when Docker reports the container exited, so the follower is told to look now."""
        with self._lock:
            follower = self._followers.get(container_id)
        if follower is None or follower.thread is None:
            return True
        if follower.complete.is_set():
            return True
        follower.poked = True
        follower.wake.set()
        return follower.complete.wait(timeout)

    def notify_exited(self, container_id: str) -> None:
        """Docker reported that the container exited: its follower looks at once."""
        with self._lock:
            follower = self._followers.get(container_id)
        if follower is not None:
            follower.poked = True
            follower.wake.set()

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
        _stop(followers)
        self._dirs.close()

    def stats(self, container_id: str) -> FollowerStats | None:
        with self._lock:
            f = self._followers.get(container_id)
        if f is None:
            return None
        journal = f.journal
        return FollowerStats(
            f.lines_written,
            f.bytes_written,
            journal.rotations if journal is not None else 0,
            journal.lost_files if journal is not None else 0,
            f.write_errors,
            f.complete.is_set(),
        )

    # ---- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogFollowersClosedError("the log followers are shut down")

    def _start(self, container_id: str, path: str, follow: bool) -> None:
        with self._lock:
            self._check_open()
            follower = self._followers.get(container_id)
            if follower is not None and follower.thread is not None:
                return
            if follower is None or follower.path != path:
                old = follower
                fd = open_log_file(path, container_id)
                follower = _Follower(container_id, path, fd, self._observer)
                self._followers[container_id] = follower
                if old is not None:
                    old.close_file()
            follower.thread = threading.Thread(
                target=self._run,
                args=(follower, follow),
                name=f"log-{container_id[:12]}",
                daemon=True,
            )
            follower.thread.start()

    def _run(self, follower: _Follower, follow: bool) -> None:
        try:
            point = self._resume_point_from_file(follower)
            journal = self._open_journal(follower, point)
            if journal is None:
                follower.complete.set()
                return
            follower.journal = journal
            try:
                self._copy(follower, journal, point, follow)
            finally:
                journal.close()
        except Exception:
            log.exception("log follower of container %s failed", follower.container_id)
        finally:
            # A dead follower must not hold ContainerStatus in wait_complete forever.
            if not follower.stop.is_set():
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

    def _open_journal(self, follower: _Follower, point: ResumePoint) -> JsonFileJournal | None:
        cid = follower.container_id
        try:
            data = self._client.inspect_container(cid)
        except docker.errors.NotFound:
            log.info("container %s is gone; its log ends here", cid)
            return None
        config = (data.get("HostConfig") or {}).get("LogConfig") or {}
        path = str(data.get("LogPath") or "")
        if config.get("Type", "json-file") != "json-file" or not path:
            # cri-shim creates every container with json-file (shim.container.docker_config).
            log.error(
                "container %s logs with %r, not json-file: no CRI log is written",
                cid,
                config.get("Type"),
            )
            return None
        try:
            max_files = int((config.get("Config") or {}).get("max-file") or 1)
        except ValueError:
            max_files = 1
        journal = JsonFileJournal(path, max_files, cid)
        if not journal.open_existing(point.since_ns):
            log.info("container %s has no json-file journal at %s; its log is empty", cid, path)
            return None
        return journal

    def _copy(
        self, follower: _Follower, journal: JsonFileJournal, point: ResumePoint, follow: bool
    ) -> None:
        """Journal → CRI file until the container no longer runs and every journal file was
        read to its end after Docker said so."""
        # Woken by inotify when the journal changes, idle followers need not poll: the
        # slow poll left is a safety net (a missed event, inotify unavailable).
        watch = self._dirs.watch(os.path.dirname(journal.path), follower.wake)
        max_poll = MAX_POLL_S if watch is None else WATCHED_POLL_S
        try:
            self._copy_loop(follower, journal, point, follow, max_poll)
        finally:
            if watch is not None:
                self._dirs.unwatch(watch, follower.wake)

    def _copy_loop(
        self,
        follower: _Follower,
        journal: JsonFileJournal,
        point: ResumePoint,
        follow: bool,
        max_poll: float,
    ) -> None:
        cid = follower.container_id
        writer = CriLogWriter()
        replay = ReplayFilter(point)
        decoder = JsonLogDecoder(point.since_ns)
        running = follow
        poll = MIN_POLL_S
        inspect_every = MIN_INSPECT_S
        now = time.monotonic()
        next_inspect = now + inspect_every
        last_inspect = now - POKE_MIN_S
        while not follower.stop.is_set():
            chunk = journal.read()
            if chunk:
                out: list[bytes] = []
                writer.feed_stamped(out, decoder.decode(chunk))
                if not replay.done:
                    out = replay.filter(out)
                if out:
                    follower.write(out)
                poll = MIN_POLL_S
                inspect_every = MIN_INSPECT_S
                next_inspect = time.monotonic() + inspect_every
                continue
            if not running:
                out = writer.finish()
                if not replay.done:
                    out = replay.filter(out)
                if out:
                    follower.write(out)
                log.debug("log of container %s complete: %d lines", cid, follower.lines_written)
                follower.complete.set()
                return
            now = time.monotonic()
            poked = follower.poked
            if now >= next_inspect or (poked and now >= last_inspect + POKE_MIN_S):
                follower.poked = False
                last_inspect = now
                inspect_every = min(inspect_every * 2, MAX_INSPECT_S)
                next_inspect = now + inspect_every
                # Not running: the files are complete now; the next reads take them to their
                # end (a rotation included) before the log is finished.
                running = self._still_running(cid)
                continue
            if poked:
                follower.stop.wait(last_inspect + POKE_MIN_S - now)
            else:
                # Cleared before the next read, so a change that comes meanwhile is not lost.
                follower.wake.wait(min(poll, next_inspect - now))
                follower.wake.clear()
                poll = min(poll * 2, max_poll)

    def _still_running(self, container_id: str) -> bool:
        try:
            state = self._client.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return False
        except INSPECT_ERRORS as err:
            log.warning("failed to inspect container %s: %s", container_id, err)
            return True
        return bool(state.get("Running"))


def _stop(followers: list[_Follower]) -> None:
    """Signal all, then wait for each: shutting down N followers takes one timeout, not N."""
    for follower in followers:
        follower.stop.set()
        follower.wake.set()
    for follower in followers:
        thread = follower.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("log follower of container %s did not stop", follower.container_id)
        follower.close_file()
