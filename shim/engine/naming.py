"""Docker container names for sandboxes and containers.

Docker allows only `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, while the CRI allows any name. The name keeps
cri-dockerd's shape (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`) so people recognise
it, with every other character replaced by `-`. Where anything had to be replaced, or a part
itself holds the `_` separator (`a_b`+`c` and `a`+`b_c` would meet), or the name grew too long,
a short hash of the true parts is appended so that different metadata never share a name.
The true metadata lives in labels and the checkpoint; nothing parses these names back.
"""

from __future__ import annotations

import hashlib
import re

_SAFE_PART = re.compile(r"[a-zA-Z0-9.-]*")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
MAX_NAME = 200
_HASH_LEN = 10


def docker_name(*parts: str) -> str:
    joined = "_".join(_UNSAFE.sub("-", p) for p in parts)
    exact = all(_SAFE_PART.fullmatch(p) for p in parts)
    if exact and len(joined) <= MAX_NAME:
        return joined
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:_HASH_LEN]
    return f"{joined[: MAX_NAME - _HASH_LEN - 1]}_{digest}"


def sandbox_name(name: str, namespace: str, uid: str, attempt: int) -> str:
    return docker_name("k8s", "POD", name, namespace, uid, str(attempt))


def container_name(container: str, pod: str, namespace: str, uid: str, attempt: int) -> str:
    return docker_name("k8s", container, pod, namespace, uid, str(attempt))
