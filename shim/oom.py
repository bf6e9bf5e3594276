"""The infra container's OOM score.

cri-dockerd gives the infra container a fixed oom_score_adj of -998 so the kernel kills it last.
Some kernels and sandboxes (this project's CI VM among them) refuse any negative value even to
root, and Docker then fails every pod start. We keep -998 where the kernel allows it and fall back
to 0 with one warning where it does not.
"""

from __future__ import annotations

import logging
import subprocess

log = logging.getLogger(__name__)

INFRA_OOM_SCORE_ADJ = -998


def infra_oom_score_adj() -> int:
    # Probe in a throwaway child: lowering our own score would be a side effect on the shim.
    probe = subprocess.run(
        ["/bin/sh", "-c", f"echo {INFRA_OOM_SCORE_ADJ} > /proc/self/oom_score_adj"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return INFRA_OOM_SCORE_ADJ
    log.warning(
        "this kernel refuses a negative oom_score_adj (%s): infra containers get 0 instead of"
        " %d, and containers asking for a negative score (kubelet's -997 for Guaranteed pods)"
        " get 0",
        probe.stderr.decode(errors="replace").strip() or "permission denied",
        INFRA_OOM_SCORE_ADJ,
    )
    return 0
