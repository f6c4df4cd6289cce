"""What keeps a local desktop's processes to themselves besides their control group: an X
socket directory of their own, scratch space of their own and a file size limit.

Every process of a desktop starts as root behind the control group's gate
(:func:`local_cgroups.popen`), then, before anything of the desktop runs:

1. enters a mount namespace of its own (``unshare --mount``, a slave of the host's mounts:
   where they are shared, as systemd makes them, the host's mounts and unmounts propagate in;
   elsewhere it holds a private copy) and binds the desktop's own socket directory on
   ``/tmp/.X11-unix``: the desktop's Xvnc puts its X socket file there, where no other artist
   sees it, connects to it, or takes its name; the directory is ``<runtime dir>/x11/.X11-unix``
   (root's, mode 1777, as X servers expect it) in a directory of the owner's (mode 0700), out
   of other artists' reach; before that, it binds the directories of the desktop's *scratch
   file system* on ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run/lock``: one tmpfs per
   desktop, ``size`` and ``nr_inodes`` limited (``scratch_size``, ``scratch_files``), mounted
   by the provider on ``<runtime dir>/scratch`` (root's, mode 0700) before the desktop's first
   process starts and unmounted after its last ended (the copies of every desktop's scratch
   file system, and of every home image, that the new namespace starts with are unmounted in it
   first, whatever installation of the host they belong to, so that none is kept alive past its
   desktop by another desktop's namespace). An artist who fills them gets ENOSPC and fills
   nothing of the host's, nor another desktop's; what is in them lives in memory, charged to
   the desktop's control group (so it counts in its memory limit too), and is gone when the
   desktop stops;
2. gets ``RLIMIT_FSIZE`` (soft and hard, so the artist cannot raise it) of
   ``max_file_size``: no file written from a desktop grows past it;
3. becomes the owner's account (``setpriv``, no supplementary groups).

X clients (libxcb) try the display's *abstract* socket, ``@/tmp/.X11-unix/X<n>``, before the
file. Abstract sockets have no permissions and one namespace per network namespace, which
desktops share with the host; so Xvnc also listens there, under a display number whose name
is free in that namespace (:mod:`local_xnames`): the name of a running desktop's display is held
by its own X server, nobody can put a server of theirs in front of it, and a name someone holds
only makes the next desktop take the next free number. Its socket file, in the private directory,
cannot be squatted at all.

Every desktop's processes bind the same directory, so they see the same sockets although each
enters a mount namespace of its own: nothing has to be kept alive to hold a namespace, and a
restarted server, or an operator (:meth:`Confinement.command`), enters a desktop the same way.
A server that is not root (no per-owner accounts) does neither 1 nor 3 and only limits file
sizes. The owner's home (and the session storage in it) is an ext4 image of ``home_size``
mounted on it by the provider (:mod:`local_home_images`); each process unmounts, in its
namespace, the copies of the other accounts' homes that the namespace started with.
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
SCRATCH_DIR = "scratch"  # in the desktop's runtime directory: root's tmpfs, mode 0700
# the scratch file system's directories and where each is bound in the desktop (if the host
# has it): every directory that any user may write to on a usual host (/var/lock is /run/lock)
SCRATCH_MOUNTS = (
    ("tmp", "/tmp"),
    ("var-tmp", "/var/tmp"),
    ("shm", "/dev/shm"),
    ("lock", "/run/lock"),
)
SCRATCH_SOURCE = "opennimble-scratch"  # the tmpfs's name in the mount table
HOME_LABEL = "opennimble-home"  # the file system label of the home images (local_home_images)
SOCKETS_DIR = ".X11-unix"  # in PRIVATE_DIR: bound on /tmp/.X11-unix
X11_SOCKETS = pathlib.Path("/tmp/.X11-unix")
TOOLS = ("unshare", "mount", "umount", "mountpoint", "findmnt", "setpriv")
INSTALL_HINT = "install Debian's util-linux and mount packages"


@dataclasses.dataclass(frozen=True)
class Confinement:
    """How one process of a desktop is confined."""

    # the desktop's socket directory, bound on /tmp/.X11-unix (None: the host's)
    sockets: pathlib.Path | None
    max_file_size: int | None  # bytes (RLIMIT_FSIZE); None: no limit
    user: tuple[int, int] | None  # (uid, gid) to become; None: stay the server's user
    # the desktop's scratch file system (:func:`mount_scratch`), whose directories are bound on
    # /tmp, /var/tmp, /dev/shm and /run/lock (None: the host's); only with ``sockets``
    scratch: pathlib.Path | None = None
    # the owner's home when homes are images mounted on them (:mod:`local_home_images`):
    # the copies of every other home image's mount are unmounted in the namespace
    home: pathlib.Path | None = None

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` confined: run this as root (or as the server's user when ``user`` is
        None), it does the rest before ``argv`` runs."""
        steps = []
        if self.sockets is not None:
            # first, the namespace's copies of every desktop's scratch file system and of
            # every home image (of any installation on the host), except this desktop's own,
            # go: none is kept alive past its desktop in here (the host's unmounts reach this
            # namespace only where the host's mounts are shared); before the binds on /tmp,
            # which could hide some
            steps.append(_unmount_other_scratch(self.scratch))
            steps.append(_unmount_other_homes(self.home))
        if self.sockets is not None and self.scratch is not None:
            for name, target in SCRATCH_MOUNTS:  # /tmp first: the sockets go into it
                source = shlex.quote(str(self.scratch / name))
                steps.append(f"[ ! -d {target} ] || mount --bind -- {source} {target} || exit 126")
            # and this desktop's own copy, bound where it belongs now (hidden, so kept, if a
            # bind covers it)
            own = shlex.quote(str(self.scratch))
            steps.append(f"m={own}; {_UNMOUNT_IF_MOUNTED.removesuffix(';')}")
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


def _unmount_other_scratch(own: pathlib.Path | None) -> str:
    """The step that unmounts, in the namespace, the copies of the scratch file systems (of
    every desktop of any installation: known by their source) that it started with, except
    ``own``. One umount for them all (there is one for every desktop of the host; findmnt
    escapes blanks in what it lists, so its words are whole mount points); a copy may have
    gone meanwhile (where the host's unmounts propagate), so if that umount fails, each copy
    still mounted is unmounted by itself."""
    mine = shlex.quote(str(own) if own is not None else "")
    return (
        f"set -f; copies=; for m in $(findmnt -rn -S {SCRATCH_SOURCE} -o TARGET); do "
        f'[ "$m" = {mine} ] || copies="$copies $m"; done; '
        '[ -z "$copies" ] || umount --lazy -- $copies 2>/dev/null || '
        f"for m in $copies; do {_UNMOUNT_IF_MOUNTED} done"
    )


def _unmount_other_homes(own: pathlib.Path | None) -> str:
    """The step that unmounts, in the namespace, the copies of the home images (of any
    installation on the host: known by their label) mounted on the host when it was made,
    except the owner's (``own``, None if homes are not images here): none stays mounted (its
    image attached) for as long as this desktop runs, after its own account's desktops
    ended."""
    mine = shlex.quote(str(own) if own is not None else "")
    return (
        f"findmnt -rn -t ext4 -o TARGET,LABEL | while read -r m l; do "
        f'if [ "$l" = {HOME_LABEL} ] && [ "$m" != {mine} ]; then '
        f"{_UNMOUNT_IF_MOUNTED} fi; done || exit 126"
    )


# unmount "$m" lazily unless it is gone: a mount listed a moment ago may have been unmounted on
# the host since (its desktop ended), which is no failure; one still mounted that cannot be
# unmounted is (the error is in the desktop's log, and the process does not start)
_UNMOUNT_IF_MOUNTED = (
    'umount --lazy -- "$m" 2>/dev/null || ! mountpoint -q -- "$m" || '
    '{ umount --lazy -- "$m" || exit 126; };'
)


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


@dataclasses.dataclass(frozen=True)
class ScratchLimits:
    """What one desktop may put in its /tmp, /var/tmp, /dev/shm and /run/lock together."""

    size: int  # bytes
    files: int  # inodes (files, directories, links)


def check_scratch_targets(*directories: pathlib.Path) -> None:
    """PermanentFailure (at server start) if one of ``directories``, which desktops must
    reach, is in /tmp, /var/tmp, /dev/shm or /run/lock, where the desktops' own scratch
    directories would hide it from them."""
    for directory in directories:
        for _, target in SCRATCH_MOUNTS:
            if directory.resolve().is_relative_to(pathlib.Path(target).resolve()):
                raise base.PermanentFailure(
                    f"{directory} is in {target}, which every desktop has a private one of "
                    "(scratch_size): its desktops would not see it; set desktops_dir and "
                    f"homes_dir of [providers.local] to directories outside {target}"
                )


def scratch_dir(directory: pathlib.Path) -> pathlib.Path:
    """The scratch file system's mount point for the desktop whose runtime directory is
    ``directory``."""
    return directory / SCRATCH_DIR


def mount_scratch(directory: pathlib.Path, limits: ScratchLimits) -> pathlib.Path:
    """A fresh scratch file system for a desktop (blocking): a tmpfs of ``limits`` on
    ``<directory>/scratch`` (root's, mode 0700: nobody reaches it by its path on the host),
    with a directory for each of /tmp, /var/tmp, /dev/shm and /run/lock (mode 1777, as on the
    host) and the mount point of the desktop's X sockets in its /tmp. What an earlier run left is
    unmounted first: every run of the desktop starts with empty scratch space, as after a
    reboot."""
    unmount_scratch(directory)
    mount_point = scratch_dir(directory)
    os.mkdir(mount_point, 0o700)
    options = f"size={limits.size},nr_inodes={limits.files},mode=0700,uid=0,gid=0,nosuid,nodev"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "--", SCRATCH_SOURCE, str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        with contextlib.suppress(OSError):
            mount_point.rmdir()
        message = done.stderr.decode(errors="replace").strip()
        raise base.TemporaryFailure(f"cannot mount the desktop's scratch space: {message}")
    for name, _ in SCRATCH_MOUNTS:
        os.mkdir(mount_point / name, 0o700)
        os.chmod(mount_point / name, 0o1777)
    os.mkdir(mount_point / "tmp" / X11_SOCKETS.name, 0o755)  # covered by the sockets' bind
    return mount_point


def unmount_scratch(directory: pathlib.Path) -> None:
    """Unmount and remove a desktop's scratch file system, and with it all that was in it
    (blocking). Called once the desktop's processes have ended; should something still hold
    it (an operator's shell in the desktop), it is detached now and freed when that ends."""
    mount_point = scratch_dir(directory)
    if os.path.ismount(mount_point):
        done = subprocess.run(["umount", "--", str(mount_point)], capture_output=True, check=False)
        if done.returncode != 0:
            lazy = ["umount", "--lazy", "--", str(mount_point)]
            done = subprocess.run(lazy, capture_output=True, check=False)
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            raise base.TemporaryFailure(f"cannot unmount {mount_point}: {message}")
    with contextlib.suppress(FileNotFoundError):
        mount_point.rmdir()
