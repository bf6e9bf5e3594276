"""The error stream's last word: metav1.Status JSON (v4+) or plain text (v1-v3)."""

from __future__ import annotations

import json

from shim.streaming import status


def test_success_is_a_bare_status() -> None:
    payload = json.loads(status.end_of_session(True, ["true"], 0, None))
    assert payload == {"metadata": {}, "status": "Success"}


def test_non_zero_exit_is_a_cause_client_go_reads_back() -> None:
    payload = json.loads(status.end_of_session(True, ["sh", "-c", "exit 3"], 3, None))
    assert payload["status"] == "Failure"
    assert payload["reason"] == "NonZeroExitCode"
    assert payload["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "exit code 3" in payload["message"]


def test_an_internal_error_names_its_cause() -> None:
    payload = json.loads(status.end_of_session(True, [], None, "docker is away"))
    assert (payload["status"], payload["reason"], payload["code"]) == (
        "Failure",
        "InternalError",
        500,
    )
    assert "docker is away" in payload["message"]


def test_attach_success_is_success() -> None:
    assert json.loads(status.end_of_session(True, (), None, None))["status"] == "Success"


def test_old_protocols_get_text_and_nothing_on_success() -> None:
    assert status.end_of_session(False, ["true"], 0, None) == b""
    assert status.end_of_session(False, [], None, "boom") == b"boom"
    assert b"exit code 2" in status.end_of_session(False, ["false"], 2, None)
