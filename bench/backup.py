"""What a session backup and its restore cost, next to copying the same files with tar directly.

Run: ``.venv/bin/python -m bench.backup [--mib 256] [--files 2000] [--rounds 3]`` as root (the
local provider reads and unpacks storage as the owner's account, as in production).

1. A local provider on a fresh data directory; an owner account with a session storage of
   ``--files`` files totalling ``--mib`` MiB of random data (written as the owner).
2. Baseline, in this run: ``tar --create`` of the storage into a file, then ``tar --extract``
   of it into an empty directory, both as root with no account switch.
3. The provider: ``back_up`` (tar as the owner, streamed into the server's archive) and
   ``restore`` (the storage discarded, the archive unpacked as the owner), ``--rounds`` times.
4. Prints median seconds and MiB/s side by side; removes everything it made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid

from opennimble.providers import base, local, local_accounts, local_session


def fill(account: local_accounts.Account, storage: pathlib.Path, mib: int, files: int) -> None:
    """Random files in the storage, written by the owner."""
    storage.mkdir(parents=True, exist_ok=True)
    size = mib * 1024 * 1024 // files
    for i in range(files):
        path = storage / f"d{i % 20}" / f"f{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
    for path in (storage.parent, storage, *storage.rglob("*")):
        os.chown(path, account.uid, account.gid)


def baseline(storage: pathlib.Path, scratch: pathlib.Path) -> tuple[float, float]:
    archive, target = scratch / "baseline.tar", scratch / "restored"
    began = time.perf_counter()
    subprocess.run(
        ["tar", "--create", f"--file={archive}", "--directory", str(storage), "."], check=True
    )
    with open(archive, "rb") as handle:
        os.fsync(handle.fileno())
    backed = time.perf_counter() - began
    target.mkdir()
    began = time.perf_counter()
    subprocess.run(
        ["tar", "--extract", f"--file={archive}", "--directory", str(target)], check=True
    )
    restored = time.perf_counter() - began
    shutil.rmtree(target)
    archive.unlink()
    return backed, restored


async def provider_round(
    provider: local.LocalProvider, spec: base.DesktopSpec, state: base.ProviderState
) -> tuple[float, float]:
    backup_id = uuid.uuid4().hex
    began = time.perf_counter()
    backup = await provider.back_up(state, backup_id)
    backed = time.perf_counter() - began
    began = time.perf_counter()
    await provider.restore(spec, state, backup)
    restored = time.perf_counter() - began
    await provider.delete_backup(backup)
    return backed, restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: backups are read and unpacked as the owner's account")
    base_dir = pathlib.Path(tempfile.mkdtemp(prefix="opennimble-bench-backup-"))
    base_dir.chmod(0o711)
    data = base_dir / "data"
    try:
        provider = local.LocalProvider(runtime_dir=data / "desktops")
        spec = base.DesktopSpec(
            session_id=uuid.uuid4().hex,
            studio_id="stid-bench",
            owned_by=str(uuid.uuid4()),
            owner_name="bench",
            ec2_instance_type="g4dn.xlarge",
            ec2_image_id="ami-bench",
            launch_profile_id="lp-bench",
        )
        accounts = local_accounts.Accounts(data / "homes", isolate=True)
        local_accounts.open_for_desktops(data, {data / "desktops", data / "homes"})
        account = accounts.ensure(spec.owned_by, spec.owner_name)
        storage = local_session.storage_dir(account, spec.session_id)
        fill(account, storage, args.mib, args.files)
        state = {"session_id": spec.session_id, **account.as_state()}

        base_runs = [baseline(storage, base_dir) for _ in range(args.rounds)]
        runs = [asyncio.run(provider_round(provider, spec, state)) for _ in range(args.rounds)]
        restored = sum(1 for _ in storage.rglob("*.bin"))
        assert restored == args.files, f"{restored} files after the restore, not {args.files}"

        print(f"storage: {args.mib} MiB in {args.files} files; median of {args.rounds} rounds")
        print(f"{'':28}{'backup s':>10}{'MiB/s':>9}{'restore s':>11}{'MiB/s':>9}")
        for name, samples in (
            ("tar as root (baseline)", base_runs),
            ("provider (as the owner)", runs),
        ):
            backed = statistics.median(s[0] for s in samples)
            back = statistics.median(s[1] for s in samples)
            print(
                f"{name:28}{backed:10.2f}{args.mib / backed:9.0f}{back:11.2f}{args.mib / back:9.0f}"
            )
    finally:
        local_accounts.remove_accounts(base_dir)
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
