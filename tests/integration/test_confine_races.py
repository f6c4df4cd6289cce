"""A desktop process starts although the mounts its confinement unmounts go meanwhile, and
its namespace keeps no other desktop's mounts alive.

Every confined process unmounts, in its new mount namespace, the copies of the other
desktops' scratch file systems and of the other accounts' home images that the namespace
started with. Those are listed first, then unmounted; a desktop that ends in between (its
scratch file system and maybe its owner's home are unmounted on the host, and where the
host's mounts are shared the unmount propagates into the namespace) must not make the new
process fail: that left a desktop whose session script never ran (no window manager, never
READY) when a desktop started while another one was being deleted.

The race is made certain here: ``findmnt`` lists, besides what is mounted, a scratch copy and
a home that are not mounted (any more).

Where the host's mounts are private (no systemd), nothing of the host's unmounts reaches the
namespace: a copy it keeps holds its file system (and a home image's loop device) for as long
as the desktop runs, so the copies of another installation's mounts go too, also from a
desktop of an installation whose homes are not images.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from opennimble.providers import local_confine
from tests.support import server

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="confinement needs root (mount namespaces)",
)

LIMITS = local_confine.ScratchLimits(size=8 * 1024 * 1024, files=1024)


@pytest.fixture
def desktops() -> Iterator[pathlib.Path]:
    """A desktops directory (not in /tmp: every desktop has its own) with two desktops' runtime
    directories whose scratch file systems are mounted: ``this`` and ``other``."""
    root = server.shared_dir("confine")
    mounted = []
    try:
        for name in ("this", "other"):
            directory = root / "desktops" / name
            directory.mkdir(parents=True)
            local_confine.mount_scratch(directory, LIMITS)
            mounted.append(directory)
        local_confine.prepare_sockets(root / "desktops" / "this", None)
        yield root
    finally:
        for directory in mounted:
            local_confine.unmount_scratch(directory)
        shutil.rmtree(root, ignore_errors=True)


def listing_also(desktops: pathlib.Path, *extra: str) -> dict[str, str]:
    """An environment whose ``findmnt`` prints what the real one does, then ``extra`` lines
    (in the desktops directory: the process's /tmp is its own by the time it lists)."""
    shims = desktops / "bin"
    shims.mkdir()
    real = shutil.which("findmnt")
    lines = "\n".join(extra)
    script = f"#!/bin/sh\n{real} \"$@\"\ncat <<'EOF'\n{lines}\nEOF\n"
    (shims / "findmnt").write_text(script)
    (shims / "findmnt").chmod(0o755)
    return {"PATH": f"{shims}:{os.environ['PATH']}"}


def confined(desktops: pathlib.Path, home: pathlib.Path | None = None) -> local_confine.Confinement:
    """The confinement of a process of the desktop ``this`` (as root)."""
    this = desktops / "desktops" / "this"
    return local_confine.Confinement(
        sockets=local_confine.sockets_dir(this),
        max_file_size=None,
        user=None,
        scratch=local_confine.scratch_dir(this),
        home=home,
    )


def run(
    confinement: local_confine.Confinement, env: dict[str, str], script: str = "echo started"
) -> subprocess.CompletedProcess[str]:
    argv = confinement.command(["/bin/sh", "-c", script])
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)


def test_a_scratch_copy_that_went_meanwhile(desktops: pathlib.Path) -> None:
    gone = desktops / "desktops" / "gone" / local_confine.SCRATCH_DIR
    done = run(confined(desktops), listing_also(desktops, str(gone)))
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr


def test_a_home_that_went_meanwhile(desktops: pathlib.Path) -> None:
    gone = desktops / "homes" / "on-gone"
    confinement = confined(desktops, home=desktops / "homes" / "on-this")
    done = run(confinement, listing_also(desktops, f"{gone} {local_confine.HOME_LABEL}"))
    assert (done.returncode, done.stdout) == (0, "started\n"), done.stderr


def test_a_copy_still_mounted_is_unmounted(desktops: pathlib.Path) -> None:
    """The other desktop's scratch copy is gone inside the process's namespace, also when the
    first umount failed (for the mount listed that was gone)."""
    other = local_confine.scratch_dir(desktops / "desktops" / "other")
    gone = desktops / "desktops" / "gone" / local_confine.SCRATCH_DIR
    script = f"mountpoint -q {other} && echo kept || echo gone"
    done = run(confined(desktops), listing_also(desktops, str(gone)), script)
    assert (done.returncode, done.stdout) == (0, "gone\n"), done.stderr
    assert os.path.ismount(other)  # on the host it stays: its desktop runs


@pytest.fixture
def elsewhere(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, pathlib.Path]]:
    """Another installation's desktop scratch file system and home image, mounted:
    (scratch mount point, home)."""
    root = server.shared_dir("confine-elsewhere")
    runtime, home = root / "desktops" / "theirs", root / "homes" / "on-theirs"
    runtime.mkdir(parents=True)
    home.mkdir(parents=True)
    image = tmp_path / "home.img"
    with open(image, "wb") as out:
        out.truncate(8 * 1024 * 1024)
    made = ["mkfs.ext4", "-q", "-F", "-L", local_confine.HOME_LABEL, str(image)]
    subprocess.run(made, check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(home)], check=True)
    scratch = local_confine.mount_scratch(runtime, LIMITS)
    try:
        yield scratch, home
    finally:
        local_confine.unmount_scratch(runtime)
        subprocess.run(["umount", str(home)], check=True)
        shutil.rmtree(root, ignore_errors=True)


def test_no_copy_of_another_installations_mounts_stays(
    desktops: pathlib.Path, elsewhere: tuple[pathlib.Path, pathlib.Path]
) -> None:
    """A desktop of an installation without home images (home None) leaves no copy of
    another installation's scratch file system or home image in its namespace: its own scratch
    is where it belongs, the others' are gone there and still mounted on the host."""
    scratch, home = elsewhere
    script = (
        f"for m in {scratch} {home}; do mountpoint -q $m && echo kept $m; done; "
        "mountpoint -q /tmp && echo tmp; true"
    )
    done = run(confined(desktops), {"PATH": os.environ["PATH"]}, script)
    assert (done.returncode, done.stdout) == (0, "tmp\n"), done.stderr
    assert os.path.ismount(scratch) and os.path.ismount(home)
