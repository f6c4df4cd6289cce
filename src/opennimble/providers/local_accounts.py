"""Per-owner Unix accounts of the local provider, and the directories their desktops reach.

Each owner's desktops run as an unprivileged account of the owner *in the session's studio*, so
that artists cannot read each other's files, read each other's process environments or signal
each other's processes, and a studio (its administrator's scripts, its desktops) cannot reach
what the same user has in another studio. The account is a system account created on first use
(``useradd --system``, no password, so nobody logs in with it other than through a desktop),
named ``on-<name>-<hash>``: a readable slug of the user name and a hash of the studio id and
user id, which are unique and never change. Its home is ``<data_dir>/homes/<account>``, mode
0700; it outlives the owner's sessions. (Accounts of earlier versions were per user only; the
provider moves a session's storage out of such an account's home when the session starts
again, and leaves the rest of that home alone.)

Creating accounts and running processes as them needs root. A server that does not run as root
runs every desktop as its own user instead (it logs a warning at start): each owner still has
a home of their own, but nothing separates the owners from each other or from the server.

Desktop accounts must be able to *search* (not list) every directory above their home and the
desktops' runtime files. Those live outside the server's private data directory, in the
provider's ``desktops_dir`` (default ``/var/lib/opennimble/<hash of the data dir>``), which the
provider makes mode 0711 (missing directories above it too); a server whose ``desktops_dir``
or ``homes_dir`` other users cannot reach is refused at start, with the fix in the message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from typing import Any

from opennimble.providers import base, local_process

log = logging.getLogger("opennimble.providers.local")

PREFIX = "on-"
SHELL = "/bin/bash"
USERADD_ATTEMPTS = 6
# useradd's exit statuses worth another try: the password or group file was locked (1, 10), the
# uid it chose was taken meanwhile (4)
USERADD_BUSY = (1, 4, 10)
_NAME = re.compile(r"on-[a-z0-9]{1,12}-[0-9a-f]{8}")
HOME_SETTLE_SECONDS = 2.0  # how long another process may take between mkdir and chown
_creating = threading.Lock()  # one useradd (and one new home) at a time in this process


@dataclasses.dataclass(frozen=True)
class Account:
    """The Unix account a desktop runs as. ``isolated`` is False when it is the server's own
    user (the server does not run as root)."""

    name: str
    uid: int
    gid: int
    home: pathlib.Path
    isolated: bool

    def popen_options(self) -> dict[str, Any]:
        """Keyword arguments of ``subprocess.Popen`` that run a process as this account."""
        if not self.isolated:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def environment(self) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "SHELL": SHELL}

    def give(self, path: pathlib.Path) -> None:
        """Make ``path`` (a file the provider just created) this account's."""
        if self.isolated:
            os.chown(path, self.uid, self.gid)

    def as_state(self) -> dict[str, Any]:
        return {"user": self.name, "uid": self.uid, "gid": self.gid, "home": str(self.home)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Account | None:
        """The account recorded in a provider state, if any."""
        name, uid, gid, home = (state.get(k) for k in ("user", "uid", "gid", "home"))
        if not (isinstance(name, str) and isinstance(uid, int) and isinstance(gid, int)):
            return None
        if not isinstance(home, str):
            return None
        return cls(name, uid, gid, pathlib.Path(home), uid != os.geteuid())


def account_name(studio_id: str, user_id: str, user_name: str) -> str:
    """The account of a user in a studio: ``on-`` + up to 12 letters and digits of the name +
    a hash of the (unique, immutable) studio and user ids. Always a valid Unix user name of at
    most 24 characters."""
    slug = re.sub(r"[^a-z0-9]", "", user_name.lower())[:12] or "user"
    digest = hashlib.sha256(f"{studio_id}/{user_id}".encode()).hexdigest()[:8]
    return f"{PREFIX}{slug}-{digest}"


def can_isolate() -> bool:
    """Whether this process may create accounts and run processes as them."""
    return os.geteuid() == 0


class Accounts:
    """Finds or creates the account and home of each owner under ``homes_dir``."""

    def __init__(self, homes_dir: pathlib.Path, *, isolate: bool) -> None:
        self.homes_dir = pathlib.Path(homes_dir).absolute()
        self.isolate = isolate

    def ensure(self, studio_id: str, user_id: str, user_name: str) -> Account:
        """The account of ``user_id`` in ``studio_id``, created with its home on first use
        (blocking)."""
        name = account_name(studio_id, user_id, user_name)
        home = self.homes_dir / name
        if self.isolate:
            entry = self._find_or_create(name, home)
            account = Account(name, entry.pw_uid, entry.pw_gid, home, True)
        else:
            account = Account(name, os.getuid(), os.getgid(), home, False)
        with _creating:  # a sibling desktop may be creating the same home right now
            _ensure_home(account)
        return account

    def _find_or_create(self, name: str, home: pathlib.Path) -> pwd.struct_passwd:
        with _creating:
            for attempt in range(USERADD_ATTEMPTS):
                entry = _lookup(name)
                if entry is not None:
                    return _checked(entry, home)
                result = _useradd(name, home)
                if result.returncode in (0, 9):  # 9: created meanwhile by another process
                    continue
                if result.returncode not in USERADD_BUSY:
                    raise base.PermanentFailure(
                        f"could not create the Unix account {name} (useradd exit status "
                        f"{result.returncode}): {(result.stderr or result.stdout).strip()}"
                    )
                if attempt < USERADD_ATTEMPTS - 1:  # the account files are locked: try again
                    time.sleep(0.2 * (attempt + 1))
            entry = _lookup(name)  # the last attempt may have made it
            if entry is not None:
                return _checked(entry, home)
            output = (result.stderr or result.stdout).strip()
            raise base.TemporaryFailure(f"could not create the Unix account {name}: {output}")


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _checked(entry: pwd.struct_passwd, home: pathlib.Path) -> pwd.struct_passwd:
    if entry.pw_dir != str(home) or entry.pw_uid == 0:
        raise base.PermanentFailure(
            f"the Unix account {entry.pw_name} exists but is not this installation's desktop "
            f"account (its home is {entry.pw_dir}, not {home})"
        )
    return entry


def _useradd(name: str, home: pathlib.Path) -> subprocess.CompletedProcess[str]:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", str(home)]
    argv += ["--shell", SHELL, "--comment", "opennimble desktop account", name]
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, stdin=None)
    except FileNotFoundError:
        raise base.PermanentFailure(
            f"{useradd} is not installed: per-owner desktop accounts need it (Debian's passwd)"
        ) from None


def _ensure_home(account: Account) -> None:
    """Create the home (mode 0700, the account's) or check that the one there is the account's.

    Another process of the installation may have just made the directory and not yet given it
    to the account: a home that is not the account's is refused only once it stays so for
    ``HOME_SETTLE_SECONDS``."""
    account.home.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(account.home, 0o700)
    except FileExistsError:
        deadline = time.monotonic() + HOME_SETTLE_SECONDS
        while not _is_home_of(account):
            if time.monotonic() > deadline:
                raise base.PermanentFailure(
                    f"{account.home} is not a directory of {account.name}: refusing to use it "
                    "as the home of its desktops"
                ) from None
            time.sleep(0.05)
        return
    account.give(account.home)


def _is_home_of(account: Account) -> bool:
    info = os.lstat(account.home)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == account.uid


def unreachable(path: pathlib.Path) -> pathlib.Path | None:
    """The first directory above ``path`` (or ``path``) that other users cannot search."""
    path = pathlib.Path(path).absolute()
    for directory in (*reversed(path.parents), path):
        with contextlib.suppress(FileNotFoundError):
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                return directory
    return None


def open_for_desktops(data_dir: pathlib.Path, own: set[pathlib.Path]) -> list[str]:
    """Let desktop accounts search ``data_dir`` and the provider's directories ``own`` in it
    (mode 0711: no listing), and close every other entry of ``data_dir`` to group and others.
    Returns the names of the entries it closed."""
    closed = []
    for directory in (data_dir, *own):
        make_searchable(directory)
        directory.chmod(0o711)
    for entry in data_dir.iterdir():
        if entry in own:
            continue
        with contextlib.suppress(OSError):
            mode = entry.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                entry.chmod(stat.S_IMODE(mode) & 0o700)
                closed.append(entry.name)
    return closed


def make_searchable(path: pathlib.Path) -> None:
    """Make ``path`` and the directories above it that do not exist yet, each mode 0711
    (whatever the umask): desktop accounts must search them."""
    path = pathlib.Path(path).absolute()
    for directory in (*reversed(path.parents), path):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        directory.chmod(0o711)


def reachability_problem(path: pathlib.Path) -> str | None:
    """Why desktop accounts cannot reach ``path``, or None if they can."""
    closed = unreachable(path)
    if closed is None:
        return None
    return (
        f"desktop accounts cannot reach {path}: {closed} does not let other users search it "
        f"(mode {stat.S_IMODE(os.stat(closed).st_mode):04o}); allow it with chmod o+x {closed} "
        "or set desktops_dir (and homes_dir) in [providers.local] to a directory other users "
        "can reach"
    )


def desktop_accounts(under: pathlib.Path) -> list[pwd.struct_passwd]:
    """The desktop accounts whose homes are under ``under``."""
    root = str(pathlib.Path(under).absolute()) + os.sep
    return [
        entry
        for entry in pwd.getpwall()
        if _NAME.fullmatch(entry.pw_name)
        and entry.pw_dir.startswith(root)
        and entry.pw_uid not in (0, os.geteuid())
    ]


def remove_accounts(under: pathlib.Path) -> list[str]:
    """Remove the desktop accounts whose homes are under ``under`` (ending their processes
    first); their groups go with them. Returns their names. For uninstalling and for tests."""
    removed = []
    for entry in desktop_accounts(under):
        _kill_user(entry.pw_uid)
        userdel = shutil.which("userdel") or "/usr/sbin/userdel"
        for _ in range(USERADD_ATTEMPTS):
            if subprocess.run([userdel, entry.pw_name], capture_output=True).returncode == 0:
                removed.append(entry.pw_name)
                break
            time.sleep(0.2)
    return removed


def _kill_user(uid: int) -> None:
    deadline = time.monotonic() + 5
    while (pids := local_process.user_pids(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
