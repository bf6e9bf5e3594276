"""The Docker labels cri-shim puts on every container it creates.

They are how a restarted shim (or a person with `docker ps`) tells what a container is. The
io.kubernetes.* names are the ones cri-dockerd uses; the io.cri-shim.* ones are our own. The
owner label (the shim's root directory) keeps two shims on one Docker engine (tests,
benchmarks) from adopting each other's containers.
"""

from __future__ import annotations

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_TYPE = "io.kubernetes.docker.type"
CONTAINER_NAME = "io.kubernetes.container.name"
SANDBOX_ID = "io.kubernetes.sandbox.id"
LOG_PATH = "io.kubernetes.container.logpath"
ATTEMPT = "io.cri-shim.attempt"

SANDBOX = "io.cri-shim.sandbox"
CONTAINER = "io.cri-shim.container"
OWNER = "io.cri-shim.root"
# The create-time facts of an application container, as JSON (shim.store.container_record).
SPEC = "io.cri-shim.spec"

TYPE_SANDBOX = "podsandbox"
TYPE_CONTAINER = "container"
