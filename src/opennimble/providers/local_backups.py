"""Backups of local sessions' storage: a tar archive of ``~/sessions/<session id>``.

Archives are written to ``<backups_dir>/<session id>/<backup id>.tar`` (``backups_dir`` is
private to the server: mode 0700), so owners cannot change a backup after it is taken. Reading
the storage for an archive, and unpacking one into it, is done by ``tar`` running as the owner,
with the archive passed on its standard input or output: nothing the owner placed in their
storage (a symbolic link, an unreadable file) can make the provider read or write anything the
owner could not. Archives are not compressed: taking a backup costs the time to copy the
storage, not CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import subprocess
from typing import Any

from opennimble.providers import base, local_session
from opennimble.providers.local_accounts import Account

SUFFIX = ".tar"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # session and backup ids: no "..", no "/"
TAR_CHANGED = 1  # GNU tar: "some files differ" (changed while read), the archive is usable


class Backups:
    """The archives under ``directory``."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = pathlib.Path(directory).absolute()

    def path(self, session_id: str, backup_id: str) -> pathlib.Path:
        return self.directory / session_id / f"{backup_id}{SUFFIX}"

    async def take(self, account: Account, session_id: str, backup_id: str) -> dict[str, Any]:
        """Archive the session's storage (an empty archive if it has none); returns the
        backup's state. Taking a backup that exists already returns it again."""
        path = self.path(session_id, backup_id)
        if not path.exists():
            await asyncio.to_thread(self._take, account, session_id, path)
        return {"path": str(path), "size": path.stat().st_size, "session_id": session_id}

    def _take(self, account: Account, session_id: str, path: pathlib.Path) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        partial = path.with_suffix(".part")
        storage = local_session.storage_dir(account, session_id)
        with open(partial, "wb") as out:
            if storage.is_dir():
                argv = ["tar", "--create", "--file=-", "--directory", str(storage), "."]
            else:  # the desktop never made its storage: an empty backup
                argv = ["tar", "--create", "--file=-", "--files-from=/dev/null"]
            env = local_session.owner_environment(account, session_id)
            done = local_session.run_owned(account, argv, env, stdout=out)
            os.fsync(out.fileno())
        if done.returncode not in (0, TAR_CHANGED):
            partial.unlink(missing_ok=True)
            failure = base.TemporaryFailure if done.returncode < 0 else base.PermanentFailure
            raise failure(f"could not back up {storage}: tar failed: {_tail(done.stderr)}")
        partial.rename(path)

    async def restore(self, account: Account, session_id: str, backup: dict[str, Any]) -> None:
        """Replace the session's storage with the archive's content."""
        path = self._checked(backup)
        if not path.is_file():
            raise base.PermanentFailure(f"the backup's archive {path.name} is missing")
        await local_session.discard_storage(account, session_id)
        env = local_session.owner_environment(account, session_id)
        await local_session.make_storage(account, session_id, env)
        storage = str(local_session.storage_dir(account, session_id))
        argv = ["tar", "--extract", "--file=-", "--directory", storage, "--no-same-owner"]

        def extract() -> subprocess.CompletedProcess[bytes]:
            with open(path, "rb") as archive:
                return local_session.run_owned(
                    account, argv, env, stdin=archive, stdout=subprocess.DEVNULL
                )

        done = await asyncio.to_thread(extract)
        if done.returncode != 0:
            raise base.TemporaryFailure(f"could not restore {path.name}: {_tail(done.stderr)}")

    async def delete(self, backup: dict[str, Any]) -> None:
        path = self._checked(backup)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other backups of the session remain
            path.parent.rmdir()

    def _checked(self, backup: dict[str, Any]) -> pathlib.Path:
        """The archive of a backup state: a file of ours, whatever the state says (its path
        must be the one :meth:`path` gives its session and name)."""
        given = pathlib.Path(str(backup.get("path", "")))
        session_id, name = str(backup.get("session_id", "")), given.name.removesuffix(SUFFIX)
        ours = _NAME.fullmatch(session_id) and _NAME.fullmatch(name)
        if not ours or given != self.path(session_id, name):
            raise base.PermanentFailure(f"not a backup of this provider: {given}")
        return given


def _tail(stderr: bytes) -> str:
    return stderr.decode(errors="replace").strip()[-500:]
