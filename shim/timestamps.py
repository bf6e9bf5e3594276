"""RFC 3339 timestamps with nine fractional digits, as bytes, both ways.

Docker's log journal stamps every entry with Go's `RFC3339NanoFixed` layout
(`2006-01-02T15:04:05.000000000Z07:00`, moby `api/server/httputils/write_log_stream.go`), and the
CRI log format asks for RFC3339Nano; writing the fixed-width form keeps every CRI line's prefix the
same length. Both codecs run once per log line, so each keeps the last whole second it converted:
consecutive lines almost always fall in the same second, and then a conversion is one integer
operation instead of a calendar computation.
"""

from __future__ import annotations

import calendar
import re
import time

NANOS = 1_000_000_000
# `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: what Docker writes for UTC times (it always logs in UTC).
FIXED_WIDTH = 30

_GENERAL = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)


class TimestampError(ValueError):
    pass


class TimestampFormatter:
    """Nanoseconds since the epoch → `2026-12-01T10:00:00.123456789Z` (UTC, fixed width)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def __call__(self, timestamp_ns: int) -> bytes:
        second, fraction = divmod(timestamp_ns, NANOS)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._second = second
        return b"%s.%09dZ" % (self._prefix, fraction)


class TimestampParser:
    """`2026-12-01T10:00:00.123456789Z` (or any RFC 3339 form with an offset) → nanoseconds."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._prefix = b""
        self._second = 0

    def __call__(self, text: bytes) -> int:
        if len(text) == FIXED_WIDTH and text[29:30] == b"Z" and text[19:20] == b".":
            prefix = text[:19]
            if prefix != self._prefix:
                self._second = _epoch_second(prefix)
                self._prefix = prefix
            try:
                return self._second * NANOS + int(text[20:29])
            except ValueError as err:
                raise TimestampError(f"bad fraction in timestamp {text!r}") from err
        return parse_general(text)


def _epoch_second(prefix: bytes) -> int:
    try:
        return calendar.timegm(
            (
                int(prefix[0:4]),
                int(prefix[5:7]),
                int(prefix[8:10]),
                int(prefix[11:13]),
                int(prefix[14:16]),
                int(prefix[17:19]),
                0,
                0,
                0,
            )
        )
    except ValueError as err:
        raise TimestampError(f"bad timestamp {prefix!r}") from err


def parse_general(text: bytes) -> int:
    """The slow path: any fraction length and a numeric offset instead of `Z`."""
    match = _GENERAL.fullmatch(text)
    if match is None:
        raise TimestampError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, sec, frac, _z, sign, off_h, off_m = match.groups()
    second = calendar.timegm(
        (int(year), int(month), int(day), int(hour), int(minute), int(sec), 0, 0, 0)
    )
    if sign is not None:
        offset = int(off_h) * 3600 + int(off_m) * 60
        second -= offset if sign == b"+" else -offset
    nanos = int(frac.ljust(9, b"0")) if frac else 0
    return second * NANOS + nanos


def rfc3339_ns(stamp: str) -> int:
    """Nanoseconds since the epoch of a timestamp in Docker's inspect output; 0 for an empty
    one and for Go's zero time (`0001-01-01T00:00:00Z`: "never", e.g. not finished yet)."""
    if not stamp or stamp.startswith("0001-"):
        return 0
    return parse_general(stamp.encode())


def since_param(timestamp_ns: int) -> str:
    """Docker's `since=` query value with nanosecond precision (`<seconds>.<nanoseconds>`)."""
    second, fraction = divmod(timestamp_ns, NANOS)
    return f"{second}.{fraction:09d}"
