"""AWS's Signature Version 4 test suite, fetched once by `make setup` so test runs need no
network: ``python -m tests.support.aws4_suite``.

The suite ships in botocore's *source* distribution (``tests/unit/auth/aws4_testsuite/``), not
in its wheel. This downloads the sdist of the installed botocore version with pip and keeps the
suite under ``.cache/aws4_testsuite/`` at the project root; the tests only read it there.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile

BOTOCORE_VERSION = importlib.metadata.version("botocore")
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE_DIR = PROJECT_ROOT / ".cache" / "aws4_testsuite"
SUITE_IN_SDIST = "tests/unit/auth/aws4_testsuite"
SUITE_DIR = CACHE_DIR / f"botocore-{BOTOCORE_VERSION}-aws4_testsuite"
MISSING = (
    f"AWS's SigV4 test suite is not in {SUITE_DIR}: `make setup` fetches it (pip download of "
    f"the botocore {BOTOCORE_VERSION} sdist, network needed once)"
)


class Unavailable(RuntimeError):
    """The suite could not be fetched; the message says why."""


def fetch() -> pathlib.Path:
    """The cached test suite directory, downloaded and extracted if needed."""
    if SUITE_DIR.is_dir():
        return SUITE_DIR
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    sdist = CACHE_DIR / f"botocore-{BOTOCORE_VERSION}.tar.gz"
    if not sdist.is_file():
        _download_sdist(sdist)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        extracted = _extract_suite(sdist, pathlib.Path(tmp))
        try:
            extracted.rename(SUITE_DIR)  # atomic: a complete directory or none
        except OSError:
            if not SUITE_DIR.is_dir():  # not just another run getting there first
                raise
    return SUITE_DIR


def _download_sdist(sdist: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"botocore=={BOTOCORE_VERSION}",
            "-d",
            tmp,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            raise Unavailable(
                f"pip download of the botocore {BOTOCORE_VERSION} sdist timed out"
            ) from None
        downloaded = pathlib.Path(tmp) / sdist.name
        if result.returncode != 0 or not downloaded.is_file():
            raise Unavailable(
                f"could not download the botocore {BOTOCORE_VERSION} sdist "
                f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        os.replace(downloaded, sdist)


def _extract_suite(sdist: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """Extract only the test suite directory of ``sdist`` into ``into``; return its path."""
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/{SUITE_IN_SDIST}/"
    with tarfile.open(sdist) as tar:
        members = [
            member
            for member in tar.getmembers()
            if member.name.startswith(prefix) and (member.isfile() or member.isdir())
        ]
        if not members:
            raise Unavailable(f"{sdist.name} has no {SUITE_IN_SDIST}/ directory")
        tar.extractall(into, members=members, filter="data")
    return into / prefix


if __name__ == "__main__":
    try:
        print(f"AWS SigV4 test suite: {fetch()}")
    except Unavailable as exc:
        sys.exit(f"{exc}\n{MISSING}")
