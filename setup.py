"""Build hook: the wheel carries the stream page's in-browser VNC client.

noVNC (npm ``@novnc/novnc``, pinned by package.json and package-lock.json) is copied from
``node_modules`` into the package (``opennimble/gateway/novnc``) when the package is built, after
``npm ci`` if it is not installed yet and npm is there. Without it the wheel still builds (the
server then uses ``novnc_dir``, or Debian's ``novnc`` package), and the build says so.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent
NOVNC = ROOT / "node_modules" / "@novnc" / "novnc"
PARTS = ("core", "vendor", "LICENSE.txt", "package.json")


class BuildWithNoVNC(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install finds node_modules in the source tree
            return
        if not (NOVNC / "core" / "rfb.js").is_file() and shutil.which("npm"):
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=False
            )
        if not (NOVNC / "core" / "rfb.js").is_file():
            print("warning: noVNC is not in node_modules (run `npm ci`): the wheel has no noVNC")
            return
        target = pathlib.Path(self.build_lib) / "opennimble" / "gateway" / "novnc"
        shutil.rmtree(target, ignore_errors=True)
        for part in PARTS:
            source = NOVNC / part
            if source.is_dir():
                shutil.copytree(source, target / part)
            else:
                shutil.copy2(source, target / part)


setup(cmdclass={"build_py": BuildWithNoVNC})
