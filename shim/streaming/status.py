"""What the error stream carries at the end of an exec or attach.

v4 and later (`v4.channel.k8s.io`, WebSocket v4/v5): a metav1.Status in JSON; an exit code
other than 0 is a Failure with reason NonZeroExitCode and the code as the message of an
`ExitCode` cause, which client-go turns back into the exit code (CRI-CONTAINERS.md §4.2).
v1-v3: nothing on success, the error's text otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence


def success_json() -> bytes:
    return json.dumps({"metadata": {}, "status": "Success"}).encode()


def exit_code_json(cmd: Sequence[str], exit_code: int) -> bytes:
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": exit_code_message(cmd, exit_code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
        }
    ).encode()


def internal_error_json(message: str) -> bytes:
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"Internal error occurred: {message}",
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }
    ).encode()


def exit_code_message(cmd: Sequence[str], exit_code: int) -> str:
    return (
        f"command terminated with non-zero exit code: error executing command {list(cmd)}, "
        f"exit code {exit_code}"
    )


def end_of_session(
    structured: bool, cmd: Sequence[str], exit_code: int | None, error: str | None
) -> bytes:
    """The error stream's payload: `structured` for v4+; `exit_code` None when unknown
    (attach, or the session failed with `error`). b"" means write nothing."""
    if error is not None:
        return internal_error_json(error) if structured else error.encode()
    if exit_code:
        return (
            exit_code_json(cmd, exit_code)
            if structured
            else exit_code_message(cmd, exit_code).encode()
        )
    return success_json() if structured else b""
