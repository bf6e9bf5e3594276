"""--log-format json: one JSON object a line with the fields a log collector filters on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from shim.logformat import JsonFormatter, configure_logging, formatter, log_fields


def _record(msg: str, *args: object, **kwargs: object) -> logging.LogRecord:
    logger = logging.getLogger("shim.sandbox.run")
    return logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        msg,
        args,
        None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_json_line_has_the_standard_fields() -> None:
    record = _record("sandbox %s: ready", "abc", extra=log_fields(sandbox_id="abc"))
    line = JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["level"] == "info"
    assert fields["logger"] == "shim.sandbox.run"
    assert fields["message"] == "sandbox abc: ready"
    assert fields["sandbox_id"] == "abc"
    assert "container_id" not in fields
    # RFC 3339 in UTC with microseconds: 2026-12-01T13:07:55.123456Z
    assert fields["time"].endswith("Z") and len(fields["time"]) == len(
        "2026-12-01T13:07:55.123456Z"
    )
    parsed = datetime.fromisoformat(fields["time"])
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs(parsed.timestamp() - record.created) < 1e-5


def test_json_line_carries_container_id_and_exception_text() -> None:
    try:
        raise RuntimeError("docker said no\nsecond line")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    logger = logging.getLogger("shim.container.start")
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "container %s: start failed",
        ("c1",),
        exc_info,
        extra=log_fields(sandbox_id="s1", container_id="c1"),
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["level"] == "error"
    assert (fields["sandbox_id"], fields["container_id"]) == ("s1", "c1")
    assert "Traceback" in fields["exception"]
    assert "RuntimeError: docker said no\nsecond line" in fields["exception"]


def test_log_fields_leaves_out_empty_ids() -> None:
    assert log_fields() == {}
    assert log_fields(sandbox_id="", container_id="c") == {"container_id": "c"}


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        formatter("xml")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger's handlers and level as they were, whatever the test does."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configure_logging_writes_each_record_once_at_the_level(
    root_logger: logging.Logger, log_format: str
) -> None:
    stream = io.StringIO()
    configure_logging("warning", log_format, stream)
    configure_logging("warning", log_format, stream)  # a second call replaces, never doubles
    log = logging.getLogger("shim.test_logformat")
    log.info("not shown")
    log.warning("sandbox %s: shown", "s9", extra=log_fields(sandbox_id="s9"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    if log_format == "json":
        assert json.loads(lines[0])["sandbox_id"] == "s9"
    else:
        assert lines[0].endswith("WARNING shim.test_logformat: sandbox s9: shown")
