"""A thin, idempotent wrapper over the ``iptables`` / ``ip6tables`` commands.

The reference plugins drive the same commands (go-iptables execs them), so rules made by either
family look the same to an operator and to each other. ``-w`` without a number waits for the
xtables lock for as long as it takes, which is what go-iptables does by default (its timeout 0
means "--wait" with no seconds): a busy node delays a plugin instead of failing it.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess

from netplugins.errors import IptablesFailure

# iptables(8) "-w [seconds]": no seconds = wait until the lock is free.
WAIT = ("-w",)

# libcni/plugins utils: chain names are "CNI-" + prefix + hex(sha512(name + id)), cut to 28.
MAX_CHAIN_LENGTH = 28


def chain_name(network: str, container_id: str, prefix: str = "") -> str:
    head = "CNI-" + prefix
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return head + digest[: MAX_CHAIN_LENGTH - len(head)]


def comment(network: str, container_id: str) -> str:
    """The reference's rule comment: ``name: "<net>" id: "<container id>"``."""
    return f'name: "{network}" id: "{container_id}"'


def ids_in_comments(rules: list[str], network: str, label: str = "") -> set[str]:
    """Container ids named by ``<label>name: "<network>" id: "<id>"`` comments in ``rules``
    (``-A`` lines as iptables-save prints them). How GC finds leftovers whose chain names are
    hashes; the network name is matched exactly, so other networks' rules are never ours.
    """
    # iptables-save prints the comment quoted, with its inner quotes escaped.
    prefix = f'--comment "{label}name: \\"{network}\\" id: \\"'
    found = set()
    for line in rules:
        start = line.find(prefix)
        if start >= 0:
            found.add(line[start + len(prefix) :].split('\\"', 1)[0])
    return found


def quote_arg(arg: str) -> str:
    """Quote one argument the way iptables-save prints it (and iptables-restore reads it)."""
    if arg and not any(c in arg for c in " \"\\'\t"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_rule(chain: str, rule: list[str], action: str = "-A") -> str:
    """One iptables-restore line, e.g. ``-A CHAIN -p tcp ...``."""
    return " ".join([action, chain, *(quote_arg(a) for a in rule)])


class Snapshot:
    """One table as ``iptables-save`` printed it: chain names and ``-A`` lines."""

    def __init__(self, lines: list[str]) -> None:
        self.chains = {line[1:].split()[0] for line in lines if line.startswith(":")}
        self.rules = [line for line in lines if line.startswith("-A ")]

    def rules_in(self, chain: str) -> list[str]:
        prefix = f"-A {chain} "
        return [line for line in self.rules if line.startswith(prefix)]


def _exec(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    except OSError as exc:  # no such binary: a coded CNI error, not a traceback
        raise IptablesFailure(f"failed to run {shlex.join(cmd)}", str(exc)) from exc


class IPTables:
    def __init__(self, version: int = 4) -> None:
        self.binary = "iptables" if version == 4 else "ip6tables"
        self.version = version

    def save(self, table: str) -> Snapshot:
        """The whole table in one exec (a few ms, versus one exec per -C probe).

        A failure is an error, never an empty table: DEL and GC decide what to remove from
        this snapshot, and an empty one would make them succeed while leaving every rule.
        """
        cmd = [f"{self.binary}-save", "-t", table]
        proc = _exec(cmd)
        if proc.returncode != 0:
            raise IptablesFailure(
                f"failed to run {shlex.join(cmd)}", proc.stderr.strip() or f"exit {proc.returncode}"
            )
        return Snapshot(proc.stdout.splitlines())

    def restore(self, table: str, lines: list[str]) -> None:
        """Apply ``lines`` (iptables command lines, e.g. ``-A X ...``) in one transaction."""
        if not lines:
            return
        payload = f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n"
        cmd = [f"{self.binary}-restore", "--noflush", *WAIT]
        proc = _exec(cmd, payload)
        if proc.returncode != 0:
            raise IptablesFailure(
                f"failed to run {shlex.join(cmd)}",
                (proc.stderr.strip() or f"exit {proc.returncode}") + f"; input: {payload!r}",
            )

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *WAIT, *args]
        proc = _exec(cmd)
        if check and proc.returncode != 0:
            raise IptablesFailure(
                f"failed to run {shlex.join(cmd)}", proc.stderr.strip() or f"exit {proc.returncode}"
            )
        return proc

    def chain_exists(self, table: str, chain: str) -> bool:
        return self._run("-t", table, "-S", chain, "1", check=False).returncode == 0

    def ensure_chain(self, table: str, chain: str) -> None:
        if self.chain_exists(table, chain):
            return
        proc = self._run("-t", table, "-N", chain, check=False)
        if proc.returncode != 0 and not self.chain_exists(table, chain):
            raise IptablesFailure(f"failed to create chain {table}/{chain}", proc.stderr.strip())

    def exists(self, table: str, chain: str, rule: list[str]) -> bool:
        return self._run("-t", table, "-C", chain, *rule, check=False).returncode == 0

    def append_unique(self, table: str, chain: str, rule: list[str]) -> None:
        if not self.exists(table, chain, rule):
            self._run("-t", table, "-A", chain, *rule)

    def insert_unique(self, table: str, chain: str, rule: list[str], position: int = 1) -> None:
        if not self.exists(table, chain, rule):
            self._run("-t", table, "-I", chain, str(position), *rule)

    def delete_rule(self, table: str, chain: str, rule: list[str]) -> None:
        """Delete every copy of ``rule``; absent rule or chain is fine."""
        while self.exists(table, chain, rule):
            self._run("-t", table, "-D", chain, *rule)

    def rules(self, table: str, chain: str) -> list[list[str]]:
        """The chain's rules as argument lists, without the leading ``-A <chain>``."""
        proc = self._run("-t", table, "-S", chain, check=False)
        if proc.returncode != 0:
            return []
        out = []
        for line in proc.stdout.splitlines():
            words = shlex.split(line)
            if len(words) >= 2 and words[0] == "-A":
                out.append(words[2:])
        return out

    def delete_rules_with_comment(self, table: str, chain: str, text: str) -> None:
        for rule in self.rules(table, chain):
            if _has_comment(rule, text):
                self._run("-t", table, "-D", chain, *rule, check=False)

    def delete_chain(self, table: str, chain: str) -> None:
        """Flush and remove ``chain``; a chain that is already gone is fine."""
        if not self.chain_exists(table, chain):
            return
        self._run("-t", table, "-F", chain, check=False)
        proc = self._run("-t", table, "-X", chain, check=False)
        if proc.returncode != 0 and self.chain_exists(table, chain):
            raise IptablesFailure(f"failed to delete chain {table}/{chain}", proc.stderr.strip())


def _has_comment(rule: list[str], text: str) -> bool:
    return any(
        rule[i] == "--comment" and i + 1 < len(rule) and rule[i + 1] == text
        for i in range(len(rule))
    )
