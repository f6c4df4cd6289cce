"""Each desktop account's home as a file system of its own: what an artist keeps in their home
and their sessions' storage is bounded by ``home_size``, not by the host's disk.

An account's home is an ext4 file system in an image file, ``<desktops_dir>/home-images/
<account>.ext4`` (the directory is root's, mode 0700: nobody but the provider reaches the
images). The image is sparse (it takes on the host's disk what its files take, plus the
journal), made with ``mkfs.ext4 -m 0`` (nothing reserved for root) and one inode per 16 KiB
(``BYTES_PER_INODE``), owned by the account at its root. The provider loop-mounts it
(``mount -o loop,nosuid,nodev``: the loop device goes when the file system is unmounted) on
the account's home:

- before the account's first desktop starts, under the host lock (:meth:`HomeImages.mount`),
  and unmounts it after its last one ended (:meth:`HomeImages.release`): a desktop of the
  account is one whose record names the account and whose control group or Xvnc still exists;
- around its own work on a home while no desktop runs (taking and restoring backups,
  discarding a session's storage, moving storage between accounts): :meth:`HomeImages.using`,
  which holds a shared lock on the account's lock file meanwhile, so that no release unmounts
  the home under that work.

Every mount is preceded by ``e2fsck -p`` (unless the image is still attached to a loop
device: still mounted somewhere, where checking would damage it). A home that exists without
an image (made before ``home_size`` was set) is copied into its new image on its first mount
(``cp -a``, as root, which copies links as links and keeps owners and modes), then emptied; a
home larger than ``home_size`` is refused with a message saying so, and left as it was.

Desktops' mount namespaces start as copies of the host's mounts, with the homes mounted then;
each confined process unmounts the copies of every home image's mount (of any installation
on the host: by their label) but its owner's in its own namespace (:mod:`local_confine`), so
that no desktop keeps another account's file system mounted (and
its image attached) after that account's last desktop ended.

Homes in a ``homes_dir`` that hosts share (over NFS, Slurm's) must not be loop-mounted by two
hosts at once: such installations keep ``home_size`` 0 and bound the shared file system with
its own quotas (a ``homes_dir`` on NFS, CIFS, Ceph and the like is refused at start when
``home_size`` is set: :meth:`HomeImages.check_not_shared`). Images are not resized when
``home_size`` changes: a new size applies to homes made afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import pathlib
import shutil
import subprocess
from collections.abc import AsyncIterator

from opennimble.providers import base, local_confine, local_host, local_process
from opennimble.providers.local_accounts import Account

IMAGES_DIR = "home-images"  # in desktops_dir: root's, mode 0700
SUFFIX = ".ext4"
BYTES_PER_INODE = 16384  # mkfs.ext4's usual ratio, fixed here whatever mke2fs.conf says
MIN_INODES = 1024
MOUNT_OPTIONS = "loop,nosuid,nodev"
TOOLS = ("mkfs.ext4", "e2fsck", "losetup", "mount", "umount", "cp")
INSTALL_HINT = "install Debian's e2fsprogs, mount and coreutils packages"
# file systems that several hosts mount: homes there are shared, not for a host's image
SHARED_FILE_SYSTEMS = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.glusterfs", "lustre", "gpfs",
     "beegfs", "9p", "fuse.sshfs", "afs", "ocfs2", "gfs2")
)  # fmt: skip
# e2fsck's exit statuses after which the file system is usable: clean, errors corrected,
# errors corrected and the system should reboot (which concerns only a mounted root)
E2FSCK_USABLE = (0, 1, 2)


class HomeImages:
    """The home images of the desktop accounts of one host's installation."""

    def __init__(self, directory: pathlib.Path, size: int, host: local_host.Host) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.size = size  # bytes
        self._host = host

    def check(self) -> None:
        """PermanentFailure (at server start) if this host cannot loop-mount images."""
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise base.PermanentFailure(
                f"home_size is set, and the local provider makes each home an ext4 image with "
                f"{', '.join(TOOLS)}, but {', '.join(missing)} is not installed: {INSTALL_HINT}"
            )
        found = subprocess.run(["losetup", "--find"], capture_output=True, text=True, check=False)
        if found.returncode != 0 or not os.path.exists("/dev/loop-control"):
            raise base.PermanentFailure(
                "home_size is set, but this host has no loop devices to mount the homes' "
                f"images on ({_tail(found.stderr) or 'no /dev/loop-control'}): load the loop "
                "module (modprobe loop; in a container, give it the loop devices) or set "
                "home_size = 0 in [providers.local], which leaves homes unbounded"
            )

    def check_not_shared(self, homes_dir: pathlib.Path) -> None:
        """PermanentFailure (at server start) if ``homes_dir`` is on a file system that hosts
        share: each host would mount an image of its own on the same homes."""
        found = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE", "--target", str(_existing(homes_dir))],
            capture_output=True,
            text=True,
            check=False,
        )
        kind = found.stdout.strip()
        if kind in SHARED_FILE_SYSTEMS:
            raise base.PermanentFailure(
                f"home_size is set, but homes_dir {homes_dir} is on {kind}, which hosts share: "
                "every host would mount a home image of its own on the same homes; set "
                "home_size = 0 in [providers.local] and bound the homes with that storage's "
                "quotas"
            )

    def image(self, account: Account) -> pathlib.Path:
        return self.directory / f"{account.name}{SUFFIX}"

    def _lock_path(self, account: Account) -> pathlib.Path:
        return self.directory / f"{account.name}.lock"

    # ---- mounting (blocking) ----------------------------------------------------------------

    def mount(self, account: Account, *, create: bool = True) -> None:
        """Mount the account's image on its home unless it is mounted; made first if there is
        none (with what the home holds), unless ``create`` is False (then a home without an
        image stays as it is). Call under the host lock."""
        if os.path.ismount(account.home):
            return
        self._prepare_directory()
        image = self.image(account)
        if not image.exists():
            if not create:
                return
            self._create(account, image)
        if not _attached(image):
            _check(image)
        _mount(image, account.home)

    def unmount(self, account: Account) -> None:
        """Unmount the account's home (lazily should something on the host still be in it: it
        is detached now and its loop device goes when that ends)."""
        _unmount(account.home)

    def _prepare_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(self.directory, 0, 0)
        self.directory.chmod(0o700)

    def _create(self, account: Account, image: pathlib.Path) -> None:
        """A new image for the account, holding what its home holds; the home is emptied once
        the image is complete."""
        partial = image.with_suffix(".part")
        partial.unlink(missing_ok=True)
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.truncate(self.size)  # sparse
        try:
            _mkfs(partial, self.size, account)
            self._fill(account, partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.rename(image)
        _empty(account.home)

    def _fill(self, account: Account, partial: pathlib.Path) -> None:
        """Copy the home's content into the new image ``partial``."""
        mount_point = self.directory / f"{account.name}.fill"
        with contextlib.suppress(FileNotFoundError):
            _unmount(mount_point)
            mount_point.rmdir()
        mount_point.mkdir(mode=0o700)
        try:
            _mount(partial, mount_point)
            try:
                os.chmod(mount_point, 0o700)  # the image's root: the home's mode
                _copy(account.home, mount_point, self.size)
            finally:
                _unmount(mount_point)
        finally:
            mount_point.rmdir()

    # ---- who uses a home ----------------------------------------------------------------

    def in_use(self, account: Account) -> bool:
        """Whether a desktop of the account is on this host: its record names the account and
        its control group (made before any of its processes, removed after all ended) or its
        Xvnc still exists."""
        for sid, record in self._host.records():
            if record.get("user") != account.name:
                continue
            if self._host.groups.group(sid).exists():
                return True
            if local_process.desktop_alive(record.get("pid"), record.get("start_time"), sid):
                return True
        return False

    async def release(self, account: Account) -> None:
        """Unmount the account's home if no desktop of it is on this host and no work of the
        provider is in it."""
        async with self._host.lock():
            await asyncio.to_thread(self._release, account)

    def _release(self, account: Account) -> None:
        if not os.path.ismount(account.home) or self.in_use(account):
            return
        fd = os.open(self._lock_path(account), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # the provider works in the home: that work releases it when done
            self.unmount(account)
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def using(self, account: Account) -> AsyncIterator[None]:
        """The account's home mounted while the provider works in it; released after."""
        async with self._host.lock():
            await asyncio.to_thread(self._prepare_directory)
            path = self._lock_path(account)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:  # never waits: the exclusive lock is only tried, under the host lock
                fcntl.flock(fd, fcntl.LOCK_SH)  # work on a home without an image: as it is
                await asyncio.to_thread(functools.partial(self.mount, account, create=False))
            except BaseException:
                os.close(fd)
                raise
        try:
            yield
        finally:
            os.close(fd)
            await asyncio.shield(self.release(account))


def unmount_all(directory: pathlib.Path) -> list[str]:
    """Unmount every home mounted from an image under ``directory`` (an installation's
    ``home-images``): for uninstalling and for tests. Returns the mount points."""
    images = str(pathlib.Path(directory).absolute()) + os.sep
    found = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    )
    devices = {
        name
        for name, _, back in (line.strip().partition(" ") for line in found.stdout.splitlines())
        if back.strip().startswith(images)
    }
    unmounted = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        source = fields[fields.index("-") + 2]
        if source in devices:
            _unmount(pathlib.Path(fields[4]))
            unmounted.append(fields[4])
    return unmounted


def _existing(path: pathlib.Path) -> pathlib.Path:
    """``path`` or the nearest directory above it that exists."""
    path = pathlib.Path(path).absolute()
    return next(p for p in (path, *path.parents) if p.exists())


def inodes(size: int) -> int:
    return max(MIN_INODES, size // BYTES_PER_INODE)


def _mkfs(image: pathlib.Path, size: int, account: Account) -> None:
    argv = ["mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(inodes(size))]
    argv += [
        "-E",
        f"root_owner={account.uid}:{account.gid}",
        "-L",
        local_confine.HOME_LABEL,
        str(image),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise base.PermanentFailure(
            f"cannot make the home image of {account.name}: {_tail(done.stderr)}"
        )


def _check(image: pathlib.Path) -> None:
    done = subprocess.run(["e2fsck", "-p", str(image)], capture_output=True, text=True, check=False)
    if done.returncode not in E2FSCK_USABLE:
        raise base.PermanentFailure(
            f"the home image {image.name} has errors that e2fsck -p does not repair (exit "
            f"status {done.returncode}): run e2fsck on it by hand: {_tail(done.stdout)}"
        )


def _attached(image: pathlib.Path) -> bool:
    """Whether ``image`` is the backing file of a loop device (mounted, maybe lazily
    unmounted but still in use)."""
    done = subprocess.run(
        ["losetup", "--associated", str(image)], capture_output=True, text=True, check=False
    )
    return bool(done.stdout.strip())


def _mount(image: pathlib.Path, target: pathlib.Path) -> None:
    argv = ["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, "--", str(image), str(target)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise base.TemporaryFailure(
            f"cannot mount the home image {image.name} on {target}: {_tail(done.stderr)}"
        )


def _unmount(target: pathlib.Path) -> None:
    if not os.path.ismount(target):
        return
    done = subprocess.run(
        ["umount", "--", str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        done = subprocess.run(
            ["umount", "--lazy", "--", str(target)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise base.TemporaryFailure(f"cannot unmount {target}: {_tail(done.stderr)}")


def _copy(home: pathlib.Path, into: pathlib.Path, size: int) -> None:
    argv = ["cp", "-a", "--one-file-system", "--", f"{home}/.", f"{into}/"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    if "No space left on device" in done.stderr:
        raise base.PermanentFailure(
            f"the home {home} holds more than home_size ({size // 1024**2} MiB) allows: "
            "remove files from it or raise home_size; it is left as it was"
        )
    raise base.TemporaryFailure(f"cannot copy the home {home} into its image: {_tail(done.stderr)}")


def _empty(home: pathlib.Path) -> None:
    """Remove what the home directory holds (never following a link in it)."""
    for entry in home.iterdir():
        if os.path.ismount(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _tail(text: str) -> str:
    return text.strip()[-500:]
