#!/usr/bin/env python3
"""A CNI plugin for tests: records every call and misbehaves on request.

Each call appends one JSON line to the file named by `log` in its config (or in the
sidecar file `<argv0>.json`, used for VERSION, which gets no config): the argv, the
whole environment, the raw and parsed stdin, the pid. Behaviour per command comes from
`behave.<COMMAND>` in the config:
  {"fail": <code>, "msg": ..., "details": ...}   exit 1 with that CNI error object
  {"hang": true, "hangChild": true}               sleep for an hour (optionally with a child)
  {"garbage": "<text>", "exit": <n>}              print non-JSON text and exit n
ADD passes prevResult through and appends an interface named after `tag` and, if the
config has `ip`, that address. VERSION answers the sidecar's `supportedVersions`.
"""

import json
import os
import subprocess
import sys
import time
from typing import Any

ALL_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    raw = sys.stdin.read()
    sidecar: dict[str, Any] = {}
    sidecar_path = sys.argv[0] + ".json"
    if os.path.exists(sidecar_path):
        with open(sidecar_path) as handle:
            sidecar = json.load(handle)
    conf: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    tag = conf.get("tag") or os.path.basename(sys.argv[0])
    record: dict[str, Any] = {
        "tag": tag,
        "command": command,
        "argv": sys.argv,
        "env": dict(os.environ),
        "stdin_raw": raw,
        "stdin": conf,
        "pid": os.getpid(),
    }
    log_path = conf.get("log") or sidecar.get("log")
    behave = (conf.get("behave") or sidecar.get("behave") or {}).get(command, {})
    if behave.get("hangChild"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        record["child_pid"] = child.pid
    append(log_path, record)

    if behave.get("hang"):
        time.sleep(3600)
    if "garbage" in behave:
        sys.stdout.write(behave["garbage"])
        return int(behave.get("exit", 1))
    if "fail" in behave:
        error = {
            "cniVersion": conf.get("cniVersion", "1.0.0"),
            "code": behave["fail"],
            "msg": behave.get("msg", f"{tag} failed {command} on request"),
            "details": behave.get("details", ""),
        }
        print(json.dumps(error))
        return 1

    if command == "VERSION":
        versions = sidecar.get("supportedVersions", ALL_VERSIONS)
        print(
            json.dumps(
                {"cniVersion": conf.get("cniVersion", "1.1.0"), "supportedVersions": versions}
            )
        )
    elif command == "ADD":
        print(json.dumps(add_result(conf, tag)))
    return 0


def add_result(conf: dict[str, Any], tag: str) -> dict[str, Any]:
    version = conf.get("cniVersion", "1.0.0")
    result = dict(conf.get("prevResult") or {"cniVersion": version})
    result["cniVersion"] = version
    interfaces = list(result.get("interfaces", []))
    interfaces.append({"name": tag, "sandbox": os.environ.get("CNI_NETNS", "")})
    result["interfaces"] = interfaces
    if conf.get("ip"):
        ip: dict[str, Any] = {"address": conf["ip"], "interface": len(interfaces) - 1}
        if not version.startswith("1."):
            ip["version"] = "6" if ":" in conf["ip"] else "4"
        result["ips"] = [*result.get("ips", []), ip]
    return result


def append(path: str | None, record: dict[str, Any]) -> None:
    if not path:
        return
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
