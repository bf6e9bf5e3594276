"""The exception hierarchy of the overlay daemon.

Messages read "failed to <verb> <object>: <cause>" or name the offending config field, so the
one log line a daemon prints before it exits says what to fix.
"""

from __future__ import annotations


class OverlayError(Exception):
    """Base of every error pyflanneld raises on purpose."""


class ConfigError(OverlayError):
    """The network config in the store (or a flag) is invalid; retrying will not help."""


class LeaseError(OverlayError):
    """The subnet lease could not be acquired or kept."""


class LeaseRevoked(LeaseError):
    """Our lease key disappeared (expired or deleted): flanneld exits, and so do we."""


class SubnetsExhausted(LeaseError):
    """Every subnet between SubnetMin and SubnetMax is leased."""


class BackendError(OverlayError):
    """The kernel refused a device, address, neighbour, FDB entry or route."""


class TrafficError(OverlayError):
    """An iptables rule could not be applied."""
