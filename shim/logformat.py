"""How cri-shim's log records are written: `--log-format text` (the default, for people) or
`json` (one object a line, for log collectors).

A JSON line carries `time` (RFC 3339 in UTC, microseconds), `level`, `logger`, `message`, the
`sandbox_id` / `container_id` the record was tagged with (code passes
`extra=log_fields(sandbox_id=...)`) and, for a record with an exception, its traceback as
`exception`. The stdlib `logging.Formatter` is all this needs; a library such as
python-json-logger would add a dependency for these few lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attributes log_fields() sets; JSON lines carry them as fields of their own.
ID_FIELDS = ("sandbox_id", "container_id")


def log_fields(*, sandbox_id: str | None = None, container_id: str | None = None) -> dict[str, str]:
    """`extra=` for a log call about a sandbox or a container, so that JSON lines can be
    filtered by id without parsing the message."""
    fields: dict[str, str] = {}
    if sandbox_id:
        fields["sandbox_id"] = sandbox_id
    if container_id:
        fields["container_id"] = container_id
    return fields


def rfc3339_utc(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii=False keeps non-ASCII names readable; each record stays one line because
        # json.dumps escapes the newlines of tracebacks and messages.
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")


def configure_logging(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """Send every record at `level` and above to `stream` (stderr) in `log_format`, replacing
    the handlers a previous call installed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
