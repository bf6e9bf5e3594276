"""inotify: event decoding, and a real watch on a temporary directory."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

from shim.engine.inotify import DirWatcher, parse_events


def test_parse_events_skips_names() -> None:
    one = struct.pack("iIII", 3, 2, 0, 16) + b"x-json.log".ljust(16, b"\0")
    two = struct.pack("iIII", 5, 256, 0, 0)
    assert parse_events(one + two) == [3, 5]


def test_a_change_in_a_watched_directory_sets_the_event(tmp_path: Path) -> None:
    watcher = DirWatcher()
    try:
        event = threading.Event()
        wd = watcher.watch(str(tmp_path), event)
        assert wd is not None
        assert not event.wait(0.2)
        (tmp_path / "journal").write_text("line\n")
        assert event.wait(5)
        watcher.unwatch(wd, event)
        event.clear()
        (tmp_path / "journal").write_text("more\n")
        assert not event.wait(0.3)
        assert watcher.watch(str(tmp_path / "absent"), event) is None
    finally:
        watcher.close()
