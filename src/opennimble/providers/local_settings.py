"""The settings of the desktop providers that run this project's desktop launcher: the
``[providers.local]`` table (and what ``[providers.slurm]`` shares with it).

Each provider checks its own table (``Settings.providers[NAME]``) with its own model, so a
third-party provider has a place for its settings. The local provider's settings were
top-level keys before; those keys (and their ``OPENNIMBLE_*`` variables) still work, with a
warning in the log that names the key to use instead (:func:`table`).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from opennimble import config
from opennimble.providers import local_confine

log = logging.getLogger("opennimble.providers")

Model = TypeVar("Model", bound=pydantic.BaseModel)
MIN_HOME_SIZE = 32  # MiB: an ext4 file system with its journal and some room


class DesktopSettings(pydantic.BaseModel):
    """What every provider that runs the desktop launcher (Xvnc, a recipe) is told."""

    model_config = pydantic.ConfigDict(extra="forbid")

    # the Xvnc executable
    xvnc: str = pydantic.Field(default="Xvnc", min_length=1)
    # the size of new desktops (clients may resize them)
    geometry: str = pydantic.Field(default="1280x800", pattern=r"^\d+x\d+$")
    # seconds a desktop may take to come up; also each initialization script's time limit
    ready_timeout: float = pydantic.Field(default=60.0, gt=0)
    # desktops this host runs at most at once (the reconciler claims no more)
    max_desktops: int = pydantic.Field(default=16, ge=1)
    # ec2ImageId (or "default") -> what runs in the display
    recipes: dict[str, config.DesktopRecipe] = {}
    # where desktops listen (VNC)
    interface: str = "127.0.0.1"
    # MiB one file written from a desktop may reach (RLIMIT_FSIZE); 0: no limit
    max_file_size: int = pydantic.Field(default=16384, ge=0)
    # the owners' homes (default: DESKTOPS_DIR/homes); hosts may share one (e.g. over NFS)
    homes_dir: pathlib.Path | None = None
    # session backups (default: DATA_DIR/backups), private to the server
    backups_dir: pathlib.Path | None = None
    # what desktop accounts reach, outside the private data dir (default:
    # /var/lib/opennimble/<hash of the data dir>)
    desktops_dir: pathlib.Path | None = None

    @pydantic.field_validator("recipes")
    @classmethod
    def _recipe_ids(cls, value: dict[str, config.DesktopRecipe]) -> dict[str, Any]:
        for image_id in value:
            if image_id != "default" and not config.EC2_IMAGE_ID.fullmatch(image_id):
                raise ValueError(f"desktop recipe {image_id!r}: not an ec2ImageId (ami-...)")
        return value

    def resolved_desktops_dir(self, settings: config.Settings) -> pathlib.Path:
        return self.desktops_dir or config.default_desktops_dir(settings.data_dir)

    def runtime_dir(self, settings: config.Settings) -> pathlib.Path:
        return self.resolved_desktops_dir(settings) / "desktops"

    def resolved_homes_dir(self, settings: config.Settings) -> pathlib.Path:
        return self.homes_dir or self.resolved_desktops_dir(settings) / "homes"

    def resolved_backups_dir(self, settings: config.Settings) -> pathlib.Path:
        return self.backups_dir or settings.data_dir / "backups"

    def launcher_options(self, settings: config.Settings) -> dict[str, Any]:
        """The keyword arguments of the desktop launcher's settings that the providers'
        constructors share."""
        return {
            "homes_dir": self.resolved_homes_dir(settings),
            "backups_dir": self.resolved_backups_dir(settings),
            "xvnc": self.xvnc,
            "geometry": self.geometry,
            "ready_timeout": self.ready_timeout,
            "recipes": self.recipes,
            "interface": self.interface,
            "max_file_size": self.max_file_size * 1024 * 1024 or None,
        }


class LocalSettings(DesktopSettings):
    """The ``[providers.local]`` table."""

    # desktops one owner (a user, in any studio) runs at once on this host
    max_desktops_per_owner: int = pydantic.Field(default=4, ge=1)
    # a desktop's CPU and memory limits: its ec2InstanceType's EC2 figures times this factor
    resource_scale: float = pydantic.Field(default=1.0, gt=0, le=64)
    # processes (and threads) one desktop may have at once
    max_processes: int = pydantic.Field(default=1024, ge=16)
    # the address API servers reach this host's desktops at (default: the interface, or the
    # hostname when the interface is a wildcard)
    advertise_host: str = ""
    # MiB a desktop's /tmp, /var/tmp, /dev/shm and /run/lock may hold together (a tmpfs of its
    # own, in memory: counted in the desktop's memory limit too)
    scratch_size: int = pydantic.Field(default=2048, ge=16)
    # files (and directories) they may hold together
    scratch_files: int = pydantic.Field(default=100_000, ge=1024)

    # MiB an owner's home (with their sessions' storage) may hold: an ext4 image of its own,
    # sparse (local_home_images); 0: unbounded, as homes in a homes_dir that hosts share must be
    home_size: int = pydantic.Field(default=10240, ge=0)

    @pydantic.field_validator("home_size")
    @classmethod
    def _home_size(cls, value: int) -> int:
        if 0 < value < MIN_HOME_SIZE:
            raise ValueError(f"0 (unbounded) or at least {MIN_HOME_SIZE} (MiB)")
        return value

    def scratch_limits(self) -> local_confine.ScratchLimits:
        return local_confine.ScratchLimits(self.scratch_size * 1024 * 1024, self.scratch_files)

    def resolved_advertise_host(self) -> str:
        if self.advertise_host:
            return self.advertise_host
        wildcard = self.interface in ("0.0.0.0", "::", "")
        return config.hostname() if wildcard else self.interface


# the old top-level settings of the desktop providers -> their keys in the provider's table
DESKTOP_KEYS = {
    "xvnc": "xvnc",
    "desktop_geometry": "geometry",
    "desktop_ready_timeout": "ready_timeout",
    "max_desktops": "max_desktops",
    "desktop_recipes": "recipes",
    "desktop_interface": "interface",
    "homes_dir": "homes_dir",
    "backups_dir": "backups_dir",
    "desktops_dir": "desktops_dir",
}
LOCAL_KEYS = {
    **DESKTOP_KEYS,
    "max_desktops_per_owner": "max_desktops_per_owner",
    "desktop_resource_scale": "resource_scale",
    "desktop_max_processes": "max_processes",
    "advertise_host": "advertise_host",
}


def table(
    settings: config.Settings, name: str, model: type[Model], legacy: Mapping[str, str]
) -> Model:
    """The ``[providers.NAME]`` table checked by ``model``; a key of ``legacy`` set at the top
    level fills its key in the table unless the table has it, with a warning naming the new
    key. :class:`config.Invalid` naming the table and each wrong key."""
    values = dict(settings.providers.get(name, {}))
    for old, new in legacy.items():
        given = getattr(settings, old)
        if given is None:
            continue
        log.warning(
            "setting `%s` (OPENNIMBLE_%s) is deprecated: set `%s` in the [providers.%s] table "
            "(OPENNIMBLE_PROVIDERS__%s__%s) instead%s",
            old,
            old.upper(),
            new,
            name,
            name.upper(),
            new.upper(),
            "; the table's value wins" if new in values else "",
        )
        values.setdefault(new, given)
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = (_problem(name, error) for error in exc.errors())
        raise config.Invalid("\n".join(problems)) from None


def _problem(name: str, error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "the table"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"not a setting of the {name} provider (see the README's configuration)"
    return f"setting `{key}` of [providers.{name}]: {message}"
