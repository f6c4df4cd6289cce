"""A wheel-only install (the built wheel pip-installed into a fresh virtual environment, run
outside the source tree) serves the stream page's in-browser VNC client."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import sysconfig

import pytest
import requests

from tests.support.server import announced, reachable

SOURCE_TREE = pathlib.Path(__file__).resolve().parents[2]
NOVNC = SOURCE_TREE / "node_modules" / "@novnc" / "novnc"


def run(*command: str | pathlib.Path, cwd: pathlib.Path) -> None:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, timeout=240
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"


@pytest.mark.sqlite  # about packaging: the PostgreSQL run adds nothing
@pytest.mark.timeout(300)
def test_a_wheel_install_serves_novnc(tmp_path: pathlib.Path) -> None:
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        SOURCE_TREE,
        "-w",
        tmp_path,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("opennimble-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        wheel,
        cwd=tmp_path,
    )
    # the dependencies come from the test's environment (a path entry: its .pth files, among
    # them the editable install of the source tree, are not read); opennimble from the wheel
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    pathlib.Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.check_output(
        [python, "-c", "import opennimble; print(opennimble.__file__)"], text=True, cwd=tmp_path
    )
    assert where.startswith(str(venv)), where

    data = reachable(tmp_path / "data")  # its desktops directory removed at exit
    server = subprocess.Popen(
        [python, "-m", "opennimble", "serve", "--port", "0", "--data-dir", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENNIMBLE_")},
    )
    try:
        endpoint, _ = announced(server)
        for part in ("core/rfb.js", "vendor/pako/lib/zlib/inflate.js"):
            answer = requests.get(f"{endpoint}/stream-client/novnc/{part}", timeout=10)
            assert answer.status_code == 200, part
            assert answer.content == (NOVNC / part).read_bytes()
        assert requests.get(f"{endpoint}/stream-client/app/stream.js", timeout=10).ok
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=20)
