"""One Settings object for the whole installation.

Values come, highest priority first, from command-line flags, ``OPENNIMBLE_*`` environment
variables, a TOML file named by ``OPENNIMBLE_CONFIG`` (or ``--config``), and the defaults below.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import socket
import tomllib
from typing import Any

import pydantic
import pydantic_settings


class EulaSetting(pydantic.BaseModel):
    """One EULA of the installation's catalogue (the table key is its ``eulaId``)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(min_length=1, max_length=64)
    # the text, inline or read from a file (one of the two)
    content: str = ""
    file: pathlib.Path | None = None
    # the ec2ImageIds whose streaming images require this EULA
    images: list[str] = []

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> EulaSetting:
        if bool(self.content) == (self.file is not None):
            raise ValueError("give a EULA either `content` or `file`")
        for image in self.images:
            if not EC2_IMAGE_ID.fullmatch(image):
                raise ValueError(f"{image!r} in `images` is not an ec2ImageId (ami-...)")
        if self.file is not None:
            try:
                self.file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ValueError(
                    f"cannot read the EULA's `file` {str(self.file)!r}: {reason} "
                    "(give a readable UTF-8 text file, or the text inline as `content`)"
                ) from None
        return self

    def text(self) -> str:
        """The EULA's content; the file is read at start, so a missing file fails early."""
        return self.file.read_text(encoding="utf-8") if self.file is not None else self.content


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
EULA_ID = re.compile(r"[a-zA-Z0-9_-]{1,22}")
EC2_IMAGE_ID = re.compile(r"ami-[0-9A-Za-z]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# environment entries a desktop recipe may not set: the provider sets them for every desktop
RESERVED_ENV = frozenset({"HOME", "USER", "LOGNAME", "SHELL", "DISPLAY", "XAUTHORITY"})


class DesktopRecipe(pydantic.BaseModel):
    """What runs in the X display of the local provider's desktops of one ``ec2ImageId``.

    Each command is a shell command line, run by ``/bin/sh`` as the session's owner in the
    owner's home. The window manager is started first and again whenever it exits.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    window_manager: str = pydantic.Field(default="openbox", min_length=1)
    applications: list[str] = ["xsetroot -solid '#3b4252'", "xterm -geometry 100x30+40+40"]
    environment: dict[str, str] = {}
    # started only when the launch profile's clipboardMode is ENABLED
    clipboard_manager: str = ""
    # READY waits until an application window is mapped and has the keyboard focus; false for
    # a recipe whose applications open no window (READY once the window manager runs)
    wait_for_window: bool = True

    @pydantic.field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"environment variable name {name!r} is not a valid name")
            if name in RESERVED_ENV or name.startswith("OPENNIMBLE_"):
                raise ValueError(f"environment variable {name} is set by opennimble itself")
        return value

    @pydantic.field_validator("applications")
    @classmethod
    def _applications(cls, value: list[str]) -> list[str]:
        if any(not command.strip() for command in value):
            raise ValueError("an application is an empty command")
        return value


class Settings(pydantic_settings.BaseSettings):
    model_config = pydantic_settings.SettingsConfigDict(env_prefix="OPENNIMBLE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=8000, ge=0, le=65535)
    data_dir: pathlib.Path = pathlib.Path("./opennimble-data")
    database_url: str = ""
    region: str = pydantic.Field(default="us-west-2", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    account_id: str = pydantic.Field(default="000000000000", pattern=r"^\d{12}$")
    public_url: str = ""
    provider: str = "local"
    # each provider's own settings, checked by that provider: [providers.NAME] tables
    providers: dict[str, dict[str, Any]] = {}
    xvnc: str = "Xvnc"
    # the in-browser VNC client of stream pages: a directory with noVNC's core/ and vendor/
    # (default: node_modules/@novnc/novnc of the source tree, installed by `make setup`)
    novnc_dir: pathlib.Path | None = None
    desktop_geometry: str = pydantic.Field(default="1280x800", pattern=r"^\d+x\d+$")
    desktop_ready_timeout: float = pydantic.Field(default=60.0, gt=0)
    reconcile_interval: float = pydantic.Field(default=1.0, gt=0)
    max_concurrent_provisions: int = pydantic.Field(default=8, ge=1)
    # desktops this host runs at most at once (the local provider's capacity)
    max_desktops: int = pydantic.Field(default=16, ge=1)
    # desktops one owner (a user, in any studio) runs at once on this host
    max_desktops_per_owner: int = pydantic.Field(default=4, ge=1)
    # a desktop's CPU and memory limits: its ec2InstanceType's EC2 figures times this factor
    desktop_resource_scale: float = pydantic.Field(default=1.0, gt=0, le=64)
    # processes (and threads) one desktop may have at once
    desktop_max_processes: int = pydantic.Field(default=1024, ge=16)
    # the local provider's desktop recipes: ec2ImageId (or "default") -> what runs in the display
    desktop_recipes: dict[str, DesktopRecipe] = {}
    page_size: int = pydantic.Field(default=100, ge=1, le=100)
    # scale-out: several servers and workers on one PostgreSQL database
    # the installation key (Fernet); every server of one database must use the same key
    key_file: pathlib.Path | None = None
    # this process runs a reconciler (serve); `serve --no-reconciler` leaves that to workers
    reconciler: bool = True
    # the workstation host this process drives desktops on (default: the machine's hostname)
    host_id: str = pydantic.Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,100}$")
    # where this host's desktops listen, and the address API servers use to reach them
    desktop_interface: str = "127.0.0.1"
    advertise_host: str = ""
    # what desktop accounts reach, kept out of the (private) data dir: the desktops' runtime
    # files and, unless homes_dir says otherwise, the owners' homes (default:
    # /var/lib/opennimble/<hash of the data dir>); other users must be able to search every
    # directory above it
    desktops_dir: pathlib.Path | None = None
    # the owners' homes (default: DESKTOPS_DIR/homes); hosts may share one (e.g. over NFS)
    homes_dir: pathlib.Path | None = None
    # the local provider's session backups (default: DATA_DIR/backups), private to the server
    backups_dir: pathlib.Path | None = None
    # seconds a reconciler's claim on a session lives without a heartbeat
    claim_timeout: float = pydantic.Field(default=30.0, ge=1)
    log_level: str = "info"
    # one line per event: plain text, or one JSON document a line
    log_format: str = pydantic.Field(default="text", pattern=r"^(text|json)$")
    # Prometheus metrics: counted per request and served at /metrics (false: neither)
    metrics: bool = True
    # the audit trail: record state-changing requests and stream opens; days entries are kept
    audit: bool = True
    audit_retention_days: float = pydantic.Field(default=90.0, gt=0)
    # quotas (ServiceQuotaExceededException when reached); sessions count until DELETED
    max_sessions_per_studio: int = pydantic.Field(default=1000, ge=1)
    max_sessions_per_owner: int = pydantic.Field(default=200, ge=1)
    max_launch_profiles_per_studio: int = pydantic.Field(default=50, ge=1)
    max_streaming_images_per_studio: int = pydantic.Field(default=10, ge=1)
    # requests per second per caller (token bucket refill rate) and the bucket's size; 0 = off
    throttle_rate: float = pydantic.Field(default=5000.0, ge=0)
    throttle_burst: int = pydantic.Field(default=10000, ge=1)
    # slow clients: seconds for a request's headers and for its body, seconds an idle
    # keep-alive connection stays open, open connections at most (over it the slowest
    # unfinished connection is closed), bytes of a request's headers at most
    header_timeout: float = pydantic.Field(default=10.0, gt=0)
    body_timeout: float = pydantic.Field(default=30.0, gt=0)
    keep_alive_timeout: int = pydantic.Field(default=5, ge=1)
    max_connections: int = pydantic.Field(default=1024, ge=1)
    max_header_bytes: int = pydantic.Field(default=65536, ge=1024)
    # the EULA catalogue: eulaId -> name, content or file, images that require it
    eulas: dict[str, EulaSetting] = {}

    @pydantic.field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @pydantic.field_validator("desktop_recipes")
    @classmethod
    def _recipe_ids(cls, value: dict[str, DesktopRecipe]) -> dict[str, DesktopRecipe]:
        for image_id in value:
            if image_id != "default" and not EC2_IMAGE_ID.fullmatch(image_id):
                raise ValueError(f"desktop recipe {image_id!r}: not an ec2ImageId (ami-...)")
        return value

    @pydantic.field_validator("eulas")
    @classmethod
    def _eula_ids(cls, value: dict[str, EulaSetting]) -> dict[str, EulaSetting]:
        for eula_id in value:
            if not EULA_ID.fullmatch(eula_id):
                raise ValueError(f"EULA id {eula_id!r}: 1 to 22 of the characters a-z A-Z 0-9 - _")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'opennimble.db'}"

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or self.endpoint_url).rstrip("/")

    @property
    def resolved_key_file(self) -> pathlib.Path:
        return self.key_file or self.data_dir / "secret.key"

    @property
    def resolved_host_id(self) -> str:
        return self.host_id or socket.gethostname()

    @property
    def resolved_advertise_host(self) -> str:
        """The address of this host's desktops for API servers (their stream gateways)."""
        if self.advertise_host:
            return self.advertise_host
        wildcard = self.desktop_interface in ("0.0.0.0", "::", "")
        return socket.gethostname() if wildcard else self.desktop_interface

    @property
    def resolved_novnc_dir(self) -> pathlib.Path:
        """``novnc_dir``; else the copy in the package (wheels), the source tree's
        node_modules (`make setup`), or Debian's ``novnc`` package, the first that is there."""
        if self.novnc_dir is not None:
            return self.novnc_dir
        here = pathlib.Path(__file__).resolve().parent
        candidates = [
            here / "gateway" / "novnc",
            here.parents[1] / "node_modules" / "@novnc" / "novnc",
            pathlib.Path("/usr/share/novnc"),
        ]
        found = [path for path in candidates if (path / "core" / "rfb.js").is_file()]
        return (found or candidates[1:])[0]

    @property
    def resolved_desktops_dir(self) -> pathlib.Path:
        return self.desktops_dir or default_desktops_dir(self.data_dir)

    @property
    def runtime_dir(self) -> pathlib.Path:
        return self.resolved_desktops_dir / "desktops"

    @property
    def resolved_homes_dir(self) -> pathlib.Path:
        return self.homes_dir or self.resolved_desktops_dir / "homes"


DESKTOPS_ROOT = pathlib.Path("/var/lib/opennimble")


def default_desktops_dir(data_dir: pathlib.Path) -> pathlib.Path:
    """Where an installation keeps what its desktop accounts reach, unless ``desktops_dir``
    says: a directory of its own under /var/lib/opennimble, named after its data directory."""
    digest = hashlib.sha256(str(pathlib.Path(data_dir).resolve()).encode()).hexdigest()
    return DESKTOPS_ROOT / digest[:12]


class Invalid(ValueError):
    """Settings that cannot be used; the message names each setting and what is wrong."""


def load(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``overrides`` are flags given on the command line (None = unset).

    Raises :class:`Invalid` naming every setting that is wrong (and where it came from).
    """
    values: dict[str, Any] = {}
    path = config_file or os.environ.get("OPENNIMBLE_CONFIG")
    if path:
        values.update(_read_file(path))
    env_set = {name for name in Settings.model_fields if f"OPENNIMBLE_{name.upper()}" in os.environ}
    values = {k: v for k, v in values.items() if k not in env_set}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except pydantic.ValidationError as exc:
        raise Invalid("\n".join(_problem(error, path) for error in exc.errors())) from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise Invalid(f"cannot read the settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise Invalid(f"the settings file {path} is not valid TOML: {exc}") from None


def _problem(error: Any, path: str | None) -> str:
    """One line about one wrong setting: its name, where it came from, what is wrong."""
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    top = str(error["loc"][0]) if error["loc"] else ""
    env = f"OPENNIMBLE_{top.upper()}"
    where = f" (from {env})" if top and env in os.environ else f" (in {path})" if path else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "not a setting of opennimble (see the configuration table of the README)"
    return f"setting `{name}`{where}: {message}"
