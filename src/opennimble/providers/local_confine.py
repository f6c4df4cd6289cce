"""What keeps a local desktop's processes to themselves besides their control group: an X
socket directory of their own and a file size limit.

Every process of a desktop starts as root behind the control group's gate
(:func:`local_cgroups.popen`), then, before anything of the desktop runs:

1. enters a mount namespace of its own (``unshare --mount``; mounts of the host still
   propagate in) and binds the desktop's own socket directory on ``/tmp/.X11-unix``: the
   desktop's Xvnc puts its X socket file there, where no other artist sees it, connects to it,
   or takes its name; the directory is ``<runtime dir>/x11/.X11-unix`` (root's, mode 1777, as X
   servers expect it) in a directory of the owner's (mode 0700), out of other artists' reach;
2. gets ``RLIMIT_FSIZE`` (soft and hard, so the artist cannot raise it) of
   ``max_file_size``: no file written from a desktop grows past it;
3. becomes the owner's account (``setpriv``, no supplementary groups).

X clients (libxcb) try the display's *abstract* socket, ``@/tmp/.X11-unix/X<n>``, before the
file. Abstract sockets have no permissions and one namespace per network namespace, which
desktops share with the host; so Xvnc also listens there, under the display number it found
free in that namespace (``-displayfd``): the name of a running desktop's display is held by its
own X server, nobody can put a server of theirs in front of it, and a name someone holds only
makes the next desktop take the next free number. Its socket file, in the private directory,
cannot be squatted at all.

Every desktop's processes bind the same directory, so they see the same sockets although each
enters a mount namespace of its own: nothing has to be kept alive to hold a namespace, and a
restarted server, or an operator (:meth:`Confinement.command`), enters a desktop the same way.
A server that is not root (no per-owner accounts) does neither 1 nor 3 and only limits file
sizes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
from typing import Any

from opennimble.providers import base, local_cgroups

PRIVATE_DIR = "x11"  # in the desktop's runtime directory: the owner's, mode 0700
SOCKETS_DIR = ".X11-unix"  # in PRIVATE_DIR: bound on /tmp/.X11-unix
X11_SOCKETS = pathlib.Path("/tmp/.X11-unix")
TOOLS = ("unshare", "mount", "setpriv")
INSTALL_HINT = "install Debian's util-linux and mount packages"


@dataclasses.dataclass(frozen=True)
class Confinement:
    """How one process of a desktop is confined."""

    # the desktop's socket directory, bound on /tmp/.X11-unix (None: the host's)
    sockets: pathlib.Path | None
    max_file_size: int | None  # bytes (RLIMIT_FSIZE); None: no limit
    user: tuple[int, int] | None  # (uid, gid) to become; None: stay the server's user

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` confined: run this as root (or as the server's user when ``user`` is
        None), it does the rest before ``argv`` runs."""
        steps = []
        if self.sockets is not None:
            source = shlex.quote(str(self.sockets))
            steps.append(f"mount --bind -- {source} {X11_SOCKETS} || exit 126")
        if self.max_file_size is not None:
            blocks = max(1, self.max_file_size // 512)  # the shell's unit: 512-byte blocks
            steps.append(f"ulimit -f {blocks} || exit 126")  # soft and hard
        if self.user is not None:
            uid, gid = self.user
            steps.append(f'exec setpriv --reuid={uid} --regid={gid} --clear-groups -- "$@"')
        else:
            steps.append('exec "$@"')
        inner = ["/bin/sh", "-c", "; ".join(steps), "sh", *argv]
        if self.sockets is None:
            return inner
        return ["unshare", "--mount", "--propagation", "slave", "--", *inner]


def popen(
    group: local_cgroups.Group | None,
    confinement: Confinement,
    argv: list[str],
    **options: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the desktop's control group and confinement (the options of
    ``subprocess.Popen``, except the user, which is the confinement's)."""
    return local_cgroups.popen(group, confinement.command(argv), **options)


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def check_tools() -> None:
    """PermanentFailure naming the missing programs, if any (at server start)."""
    missing = missing_tools()
    if missing:
        raise base.PermanentFailure(
            f"the local provider confines each desktop with {', '.join(TOOLS)}, but "
            f"{', '.join(missing)} is not installed: {INSTALL_HINT}"
        )


def sockets_dir(directory: pathlib.Path) -> pathlib.Path:
    """The socket directory of the desktop whose runtime directory is ``directory``."""
    return directory / PRIVATE_DIR / SOCKETS_DIR


def prepare_sockets(directory: pathlib.Path, owner: tuple[int, int] | None) -> pathlib.Path:
    """A fresh socket directory for a desktop, in its runtime ``directory``; whatever an
    earlier run of the desktop left there is removed first (blocking)."""
    remove_sockets(directory)
    private = directory / PRIVATE_DIR
    os.mkdir(private, 0o700)
    os.mkdir(private / SOCKETS_DIR, 0o700)
    os.chmod(private / SOCKETS_DIR, 0o1777)
    if owner is not None:
        os.chown(private, *owner)
    return private / SOCKETS_DIR


def remove_sockets(directory: pathlib.Path) -> None:
    """Remove a desktop's socket directory (blocking; never follows what the owner put in it)."""
    private = directory / PRIVATE_DIR
    with contextlib.suppress(FileNotFoundError):
        if private.is_symlink() or not private.is_dir():
            private.unlink()
        else:
            shutil.rmtree(private)


def ensure_mount_point() -> None:
    """Make the host's ``/tmp/.X11-unix`` (sticky, writable by all, as X expects it) unless it
    exists, and refuse one that anybody but root owns or that is not a directory: desktops'
    socket directories are bound on it, and what a server not running as root starts puts its
    sockets there."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(X11_SOCKETS, 0o700)
        fd = os.open(X11_SOCKETS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o1777)
        finally:
            os.close(fd)
    info = os.lstat(X11_SOCKETS)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise base.PermanentFailure(
            f"{X11_SOCKETS} is not a directory of root's: X servers cannot use it safely"
        )
