"""Docker Engine API timings, taken on the docker SDK client's HTTP session.

`docker.APIClient` is a `requests.Session`, and every request it makes (inspect, create,
start, the events and logs streams) goes through `Session.send`: wrapping that one method on
the instance measures all of them. The time is to the response headers (a stream's body is
read later, for as long as it lasts). Paths carry ids and names, so they are reduced to an
operation such as `GET containers/{id}/json` to keep the label set small.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests

from shim.metrics.registry import ShimMetrics

# The Engine API's collections whose second path segment is an object id or name.
_COLLECTIONS = frozenset(
    {"containers", "images", "exec", "networks", "volumes", "plugins", "services", "tasks"}
)
# Second segments that are verbs on the collection itself, not an id.
_COLLECTION_VERBS = frozenset({"json", "create", "prune", "load", "search", "get"})


def operation(method: str, url: str) -> str:
    """`GET /v1.41/containers/3f2a.../json?all=1` → `GET containers/{id}/json`."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if segments and segments[0].startswith("v1."):
        segments = segments[1:]
    if not segments:
        return f"{method} /"
    head = segments[0]
    if head in _COLLECTIONS and len(segments) >= 2 and segments[1] not in _COLLECTION_VERBS:
        # Image names hold slashes: the id is everything between the collection and the verb.
        tail = segments[-1] if len(segments) > 2 else ""
        return f"{method} {head}/{{id}}" + (f"/{tail}" if tail else "")
    return f"{method} {'/'.join(segments[:2])}"


def instrument(session: requests.Session, metrics: ShimMetrics) -> None:
    """Time every request `session` sends from now on."""
    send = session.send

    def timed_send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        op = operation(request.method or "?", request.url or "")
        start = time.perf_counter()
        try:
            response = send(request, **kwargs)
        except requests.exceptions.RequestException:
            metrics.docker_errors.labels(op, "connection").inc()
            raise
        finally:
            metrics.docker_duration.labels(op).observe(time.perf_counter() - start)
        if response.status_code >= 400:
            metrics.docker_errors.labels(op, str(response.status_code)).inc()
        return response

    session.send = timed_send  # type: ignore[method-assign]
