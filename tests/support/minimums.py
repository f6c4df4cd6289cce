"""Do the dependency minimums of pyproject.toml really work? (`make check-minimums`)

Makes a virtual environment in .cache/minimums with uv (a dev dependency, from PyPI), installs
opennimble there (not editable: as a user's pip would) with every direct dependency at the
lowest version pyproject.toml allows (``uv pip install --resolution lowest-direct``), fetches
AWS's SigV4 test cases for that botocore, and runs the unit tests and the migrations' tests
(the schema on a real database: SQLite, and PostgreSQL where OPENNIMBLE_TEST_DATABASE_URL
names one) with it. It prints the
versions it tested. Without PyPI it says so and stops with status 0: there is nothing to
check offline.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "minimums"
INDEX = os.environ.get("UV_INDEX_URL", "https://pypi.org/simple/")
TESTS = ("tests/unit", "tests/integration/test_migrations.py")
SHOWN = (
    "botocore",
    "sqlalchemy",
    "alembic",
    "cryptography",
    "orjson",
    "uvicorn",
    "starlette",
    "click",
    "pydantic-settings",
    "psycopg",
    "prometheus-client",
    "jinja2",
    "argon2-cffi",
    "itsdangerous",
    "python-multipart",
    "authlib",
    "joserfc",
    "httpx2",
)


def reachable(url: str) -> str | None:
    """None if ``url`` answers, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=10):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def run(*command: str | pathlib.Path) -> None:
    subprocess.run([str(c) for c in command], cwd=ROOT, check=True)


def main() -> int:
    why = reachable(INDEX)
    if why is not None:
        print(f"check-minimums: skipped: the package index {INDEX} cannot be reached ({why})")
        return 0
    uv = shutil.which("uv", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        print("check-minimums: uv is missing: `make setup` installs it (a dev dependency)")
        return 1
    python = VENV / "bin" / "python"
    run(uv, "venv", "--quiet", "--seed", "--clear", "--python", sys.executable, VENV)
    run(uv, "pip", "install", "--quiet", "--python", python, "--resolution", "lowest-direct",
        ".[test]")  # fmt: skip
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    versions = dict(line.lower().split("==", 1) for line in listed if "==" in line)
    print("check-minimums: testing with", ", ".join(f"{n} {versions.get(n)}" for n in SHOWN))
    run(python, "-m", "tests.support.aws4_suite")
    tests = subprocess.run(
        [str(python), "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider"], cwd=ROOT
    )
    verdict = "work" if tests.returncode == 0 else "FAIL: raise them in pyproject.toml"
    print(f"check-minimums: the dependency minimums {verdict}")
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
