"""Directory change notification (Linux inotify, through libc with ctypes).

Why our own: hundreds of idle log followers each polling their journal cost the node CPU for
nothing; one thread blocked in read(2) on an inotify descriptor wakes exactly the follower
whose journal changed. The few calls needed (inotify_init1, inotify_add_watch,
inotify_rm_watch) are stable kernel ABI, and the event decoding is one struct, so this module
takes no new dependency. Where inotify is unavailable, `watch` returns None and followers
fall back to polling.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
WATCHED = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def parse_events(data: bytes) -> list[int]:
    """The watch descriptors named by a buffer of inotify events."""
    wds = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
        wds.append(wd)
        offset += _EVENT.size + length
    return wds


class DirWatcher:
    """One thread that sets an event whenever something in a watched directory changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[int, list[threading.Event]] = {}
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            log.warning(
                "inotify is unavailable (%s): log followers poll", os.strerror(ctypes.get_errno())
            )
            return
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)
        self._thread.start()

    def watch(self, directory: str, event: threading.Event) -> int | None:
        """Set `event` on every change in `directory`; the handle for `unwatch`, or None."""
        if self._fd < 0:
            return None
        with self._lock:
            wd = _libc.inotify_add_watch(self._fd, directory.encode(), WATCHED)
            if wd < 0:
                code = ctypes.get_errno()
                if code != errno.ENOENT:
                    log.warning("cannot watch %s: %s", directory, os.strerror(code))
                return None
            self._events.setdefault(wd, []).append(event)
            return int(wd)

    def unwatch(self, wd: int, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get(wd, [])
            if event in events:
                events.remove(event)
            if not events and wd in self._events:
                del self._events[wd]
                _libc.inotify_rm_watch(self._fd, wd)  # the kernel may have dropped it already

    def close(self) -> None:
        if self._fd < 0:
            return
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)
        self._fd = -1

    def _run(self) -> None:
        while True:
            readable, _, _ = select.select([self._fd, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            with self._lock:
                targets = [e for wd in set(parse_events(data)) for e in self._events.get(wd, [])]
            for event in targets:
                event.set()
