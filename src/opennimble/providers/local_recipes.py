"""Desktop recipes: what runs in a local desktop's X display, chosen by its ``ec2ImageId``.

A recipe (:class:`opennimble.config.DesktopRecipe`, the ``desktop_recipes`` setting) names a
window manager, the applications to open and extra environment. Images without a recipe get
the ``default`` recipe of the settings, or else the built-in desktop: Openbox (which follows
the display when a client resizes it) with an xterm. A desktop is started by one small shell
script, the *session*, run as the owner: it keeps the window manager running and starts the
applications once.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from collections.abc import Mapping

from opennimble import config
from opennimble.providers import base

BUILTIN = config.DesktopRecipe()
# the window manager is started again when it exits, unless it exited within QUICK_EXIT seconds
# GIVE_UP_AFTER times in a row (it cannot run: a lost display, a broken configuration)
QUICK_EXIT, GIVE_UP_AFTER = 5, 5
PACKAGES_HINT = "install Debian's openbox, xterm and x11-xserver-utils packages (make setup)"


@dataclasses.dataclass(frozen=True)
class Chosen:
    label: str  # for messages: "the desktop recipe of ami-...", "the default desktop"
    recipe: config.DesktopRecipe


def choose(recipes: Mapping[str, config.DesktopRecipe], image_id: str) -> Chosen:
    if image_id in recipes:
        return Chosen(f"the desktop recipe of {image_id}", recipes[image_id])
    if "default" in recipes:
        return Chosen("the default desktop recipe", recipes["default"])
    return Chosen("the built-in default desktop", BUILTIN)


def commands(recipe: config.DesktopRecipe, clipboard: bool) -> list[str]:
    """The recipe's applications, with its clipboard manager when the clipboard is on."""
    apps = list(recipe.applications)
    if clipboard and recipe.clipboard_manager:
        apps.append(recipe.clipboard_manager)
    return apps


def check_installed(chosen: Chosen, clipboard: bool, path: str) -> None:
    """PermanentFailure (AMI_VALIDATION_ERROR) if a program of the recipe is not installed."""
    missing = []
    for command in [chosen.recipe.window_manager, *commands(chosen.recipe, clipboard)]:
        program = _program(command)
        if program and shutil.which(program, path=path) is None:
            missing.append(program)
    if missing:
        hint = f"; {PACKAGES_HINT}" if chosen.recipe is BUILTIN else ""
        raise base.PermanentFailure(
            f"{chosen.label} needs {', '.join(missing)}, not installed on this host{hint}",
            "AMI_VALIDATION_ERROR",
        )


def has_window(recipe: config.DesktopRecipe, clipboard: bool) -> bool:
    """Whether the desktop is usable only once an application window is up (the recipe opens
    one: it has applications and does not say ``wait_for_window = false``)."""
    return recipe.wait_for_window and bool(commands(recipe, clipboard))


def session_script(
    recipe: config.DesktopRecipe,
    clipboard: bool,
    gate_fd: int | None = None,
    display_first: bool = False,
) -> str:
    """The shell script that runs the desktop's window manager and applications. With
    ``gate_fd``, the applications start only once a line (or the end) comes on that file
    descriptor: the provider sends it once the window manager manages the screen, so that
    the first windows are managed (framed, given the focus) from the start. With
    ``display_first`` too, the script is started before its X server is up and waits for a
    line before that one, the display's number, before it starts anything (it exits if none
    comes)."""
    lines = ["# The desktop session of an opennimble streaming session (generated)."]
    if gate_fd is not None and display_first:
        lines += [
            f"read -r display <&{gate_fd} || exit 1",
            'case "$display" in ""|*[!0-9]*) exit 1;; esac',
            'DISPLAY=":$display"; export DISPLAY',
        ]
    lines += [
        "keep_window_manager() {",
        "  quick=0",
        f'  while [ "$quick" -lt {GIVE_UP_AFTER} ]; do',
        "    started=$(date +%s)",
        f"    {recipe.window_manager}",
        '    echo "opennimble: the window manager exited with status $?" >&2',
        f"    if [ $(( $(date +%s) - started )) -lt {QUICK_EXIT} ]; then quick=$((quick + 1));",
        "    else quick=0; fi",
        "    sleep 1",
        "  done",
        '  echo "opennimble: the window manager keeps exiting at once; not starting it again" >&2',
        "}",
        "keep_window_manager &",
    ]
    if gate_fd is not None:
        lines.append(f"read -r _ <&{gate_fd}; exec {gate_fd}<&-")
    lines += [f"{command} &" for command in commands(recipe, clipboard)]
    lines.append("wait")
    return "\n".join(lines) + "\n"


def _program(command: str) -> str | None:
    """The program a simple command line runs (None for what only a shell can tell)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("="):  # VAR=value prefixes
        words.pop(0)
    if not words or any(ch in words[0] for ch in "$`;&|<>(){}"):
        return None
    return words[0]
