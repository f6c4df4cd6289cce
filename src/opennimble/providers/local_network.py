"""What desktop accounts may reach on the network: not the database, not the desktops' VNC ports.

Desktops share the host's network with the server. Without a filter, an artist's terminal
could connect to the PostgreSQL port (and try the credentials it finds) or to every other
desktop's VNC port. The local provider therefore keeps an nftables table of its own,
``inet opennimble-<hash of the data directory>``, whose output hook refuses (TCP reset)
connections *from* processes of the desktop accounts (a set of uids, ``meta skuid``) *to* the
closed ports: the database's port (PostgreSQL) and the VNC port of every desktop of this host.
The server (root) and everyone else are not affected, and nothing is filtered for traffic from
other machines. The table is rebuilt, with every desktop account of the installation and the
ports of the host's desktops, the first time the provider starts a desktop; a reboot clears
it, and the next start rebuilds it.

Where ``nft`` is missing or refused (no nf_tables in the kernel, no CAP_NET_ADMIN in a
container), the provider logs a warning and desktops run unfiltered: the deployment must then
keep desktop accounts away from those ports itself (see the README).
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import shutil
import subprocess
from collections.abc import Iterable

import sqlalchemy as sa

log = logging.getLogger("opennimble.providers.local")

FAMILY = "inet"
POSTGRESQL_PORT = 5432
ACCOUNTS_SET = "desktop_accounts"
PORTS_SET = "closed_ports"


def table_name(data_dir: pathlib.Path) -> str:
    """The nftables table of the installation whose data directory is ``data_dir``."""
    digest = hashlib.sha256(str(pathlib.Path(data_dir).absolute()).encode()).hexdigest()
    return f"opennimble-{digest[:10]}"


def database_ports(url: str) -> set[int]:
    """The TCP port of the database named by ``url`` (none for SQLite)."""
    parsed = sa.engine.make_url(url)
    if not parsed.get_backend_name().startswith("postgresql"):
        return set()
    return {parsed.port or POSTGRESQL_PORT}


class Firewall:
    """The provider's nftables table. Every method is blocking (run it in a thread) and never
    raises: a failure disables the filter, with a warning saying what the deployment must do."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.working = False

    def build(self, uids: Iterable[int], ports: Iterable[int]) -> bool:
        """Create the table afresh (atomically replacing an earlier one) with ``uids`` as the
        desktop accounts and ``ports`` closed to them. Returns whether the filter works."""
        name = f"{FAMILY} {self.table}"
        script = (
            f"table {name} {{}}\ndelete table {name}\n"
            f"table {name} {{\n"
            f"  set {ACCOUNTS_SET} {{ typeof meta skuid; }}\n"
            f"  set {PORTS_SET} {{ typeof tcp dport; }}\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    meta skuid @{ACCOUNTS_SET} tcp dport @{PORTS_SET} reject with tcp reset\n"
            "  }\n"
            "}\n"
        )
        script += self._elements("add", ACCOUNTS_SET, uids)
        script += self._elements("add", PORTS_SET, ports)
        problem = _nft(script)
        self.working = problem is None
        if problem is not None:
            log.warning(
                "desktop accounts are not kept from the database port and other desktops' VNC "
                "ports (nftables: %s); the deployment must filter them (see the README)",
                problem,
            )
        return self.working

    def add_account(self, uid: int) -> None:
        self._change("add", ACCOUNTS_SET, [uid])

    def close_port(self, port: int) -> None:
        self._change("add", PORTS_SET, [port])

    def open_port(self, port: int) -> None:
        self._change("delete", PORTS_SET, [port])

    def remove(self) -> None:
        """Delete the table (uninstalling, tests)."""
        _nft(f"table {FAMILY} {self.table} {{}}\ndelete table {FAMILY} {self.table}\n")
        self.working = False

    def _change(self, verb: str, which: str, values: list[int]) -> None:
        if not self.working:
            return
        problem = _nft(self._elements(verb, which, values))
        if problem is not None and verb == "add":
            log.warning("could not add %s to the desktops' network filter: %s", values, problem)

    def _elements(self, verb: str, which: str, values: Iterable[int]) -> str:
        listed = ", ".join(str(int(v)) for v in sorted(set(values)))
        if not listed:
            return ""
        return f"{verb} element {FAMILY} {self.table} {which} {{ {listed} }}\n"


def _nft_command() -> str | None:
    return shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")


def warn_if_unavailable() -> None:
    """At start: say now, not at the first desktop, that the filter cannot be set up."""
    if _nft_command() is None:
        log.warning(
            "nft is not installed (Debian's nftables package): desktop accounts will reach the "
            "database port and other desktops' VNC ports unless the deployment filters them "
            "(see the README)"
        )


def _nft(script: str) -> str | None:
    """Run an nft script; None if it worked, else what went wrong."""
    nft = _nft_command()
    if nft is None:
        return "nft is not installed (Debian's nftables package)"
    done = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip()[-300:] or f"exit status {done.returncode}"
    return None
