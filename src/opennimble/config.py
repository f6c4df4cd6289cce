"""One Settings object for the whole installation.

Values come, highest priority first, from command-line flags, ``OPENNIMBLE_*`` environment
variables, a TOML file named by ``OPENNIMBLE_CONFIG`` (or ``--config``), and the defaults below.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import socket
import tomllib
import urllib.parse
from typing import Any, Literal

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


class OidcSetting(pydantic.BaseModel):
    """Portal sign-in with an external OpenID Connect provider (the ``[oidc]`` table)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    # the provider's issuer URL: its discovery document is ISSUER/.well-known/openid-configuration
    issuer: str
    client_id: str = pydantic.Field(min_length=1)
    client_secret: pydantic.SecretStr  # never shown in a repr
    # the sign-in page's button says "Sign in with NAME"
    name: str = pydantic.Field(default="OpenID Connect", min_length=1, max_length=64)
    # the claim of the ID token (or, when absent there, of the userinfo answer) whose value is
    # the identity store user's name
    claim: str = pydantic.Field(default="preferred_username", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # a user matched by the claim who is not in the identity store is created (not an operator)
    create_users: bool = False
    scopes: list[str] = ["openid", "profile", "email"]
    # seconds to wait for the provider's answers
    timeout: float = pydantic.Field(default=10.0, gt=0, le=120)

    @pydantic.field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        url = urllib.parse.urlsplit(value)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(
                f"{value!r} is not an issuer URL: give the provider's https:// issuer, e.g. "
                "https://keycloak.example.com/realms/studio or https://accounts.google.com"
            )
        if url.query or url.fragment:
            raise ValueError(f"{value!r}: an issuer URL has no query or fragment")
        if url.scheme == "http" and url.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError(
                f"{value!r}: an issuer must be https:// (plain http only on localhost), or the "
                "ID tokens' keys could be replaced on the way"
            )
        return value.rstrip("/")

    @pydantic.field_validator("client_secret")
    @classmethod
    def _client_secret(cls, value: pydantic.SecretStr) -> pydantic.SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("empty: give the secret of the client registered at the provider")
        return value

    @pydantic.field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include `openid` (without it there is no ID token)")
        for scope in value:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"{scope!r} is not a scope")
        return value

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


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
    # PostgreSQL: threads of a process that run the API's statements (each waits on the
    # database's answers; more when the database is far away, fewer when the CPU is short)
    database_threads: int = pydantic.Field(default=4, ge=1, le=10)
    region: str = pydantic.Field(default="us-west-2", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    account_id: str = pydantic.Field(default="000000000000", pattern=r"^\d{12}$")
    public_url: str = ""
    provider: str = "local"
    # each provider's own settings, checked by that provider: [providers.NAME] tables (as
    # environment variables OPENNIMBLE_PROVIDERS__NAME__KEY, or all of them as JSON in
    # OPENNIMBLE_PROVIDERS)
    providers: dict[str, dict[str, Any]] = {}
    # the in-browser VNC client of stream pages: a directory with noVNC's core/ and vendor/
    # (default: node_modules/@novnc/novnc of the source tree, installed by `make setup`)
    novnc_dir: pathlib.Path | None = None
    reconcile_interval: float = pydantic.Field(default=1.0, gt=0)
    max_concurrent_provisions: int = pydantic.Field(default=8, ge=1)
    page_size: int = pydantic.Field(default=100, ge=1, le=100)
    # scale-out: several servers and workers on one PostgreSQL database
    # the installation key (Fernet); every server of one database must use the same key
    key_file: pathlib.Path | None = None
    # this process runs a reconciler (serve); `serve --no-reconciler` leaves that to workers
    reconciler: bool = True
    # the workstation host this process drives desktops on (default: the machine's hostname)
    host_id: str = pydantic.Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,100}$")
    # seconds a reconciler's claim on a session lives without a heartbeat
    claim_timeout: float = pydantic.Field(default=30.0, ge=1)
    log_level: str = "info"
    # one line per event: plain text, or one JSON document a line
    log_format: str = pydantic.Field(default="text", pattern=r"^(text|json)$")
    # addresses of reverse proxies whose X-Forwarded-For / -Proto are believed (comma-separated
    # IPs or networks, "*" for any); none by default: anyone who reaches the port (desktop
    # accounts on this host too) could otherwise name any client address in logs and audit
    forwarded_allow_ips: str = ""
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
    # the HTTP server: uvicorn (every slow-client protection below) or granian (the header
    # deadline and size limit only; see http_servers.py)
    http_server: Literal["uvicorn", "granian"] = "uvicorn"
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
    # portal sign-in with an OpenID Connect provider (the [oidc] table; none: passwords only)
    oidc: OidcSetting | None = None
    # Deprecated: the desktop providers' settings before they had tables of their own. Each
    # still fills its key in [providers.local] (and the desktop keys of [providers.slurm]),
    # with a warning in the log naming that key (providers/local_settings.py).
    xvnc: str | None = None
    desktop_geometry: str | None = None
    desktop_ready_timeout: float | None = None
    max_desktops: int | None = None
    max_desktops_per_owner: int | None = None
    desktop_resource_scale: float | None = None
    desktop_max_processes: int | None = None
    desktop_recipes: dict[str, DesktopRecipe] | None = None
    desktop_interface: str | None = None
    advertise_host: str | None = None
    desktops_dir: pathlib.Path | None = None
    homes_dir: pathlib.Path | None = None
    backups_dir: pathlib.Path | None = None

    @pydantic.field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: one of {', '.join(LOG_LEVELS)}")
        return value.lower()

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
        return self.host_id or hostname()

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


DESKTOPS_ROOT = pathlib.Path("/var/lib/opennimble")
PROVIDER_ENV = re.compile(r"OPENNIMBLE_PROVIDERS__([A-Za-z0-9_-]+?)__([A-Za-z0-9_]+)")


def hostname() -> str:
    return socket.gethostname()


def default_desktops_dir(data_dir: pathlib.Path) -> pathlib.Path:
    """Where an installation keeps what its desktop accounts reach, unless ``desktops_dir``
    says: a directory of its own under /var/lib/opennimble, named after its data directory."""
    digest = hashlib.sha256(str(pathlib.Path(data_dir).resolve()).encode()).hexdigest()
    return DESKTOPS_ROOT / digest[:12]


MISSING = {
    "oidc": "missing: the [oidc] table needs `issuer`, `client_id` and `client_secret` (the "
    "provider's issuer URL and the client registered there for this portal, whose redirect URI "
    "is PUBLIC_URL/portal/signin/oidc/callback)",
}


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
    given = values.get("providers", {})
    if "providers" in env_set:  # all the tables as JSON; the keys of their own go on top
        with contextlib.suppress(ValueError):
            given = json.loads(os.environ["OPENNIMBLE_PROVIDERS"])
    if isinstance(given, dict) and all(isinstance(table, dict) for table in given.values()):
        tables = _provider_environment({name: dict(table) for name, table in given.items()})
        if tables:
            values["providers"] = tables
    try:
        return Settings(**values)
    except pydantic.ValidationError as exc:
        raise Invalid("\n".join(_problem(error, path) for error in exc.errors())) from None


def _provider_environment(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``tables`` with the keys that ``OPENNIMBLE_PROVIDERS__NAME__KEY`` variables set (a value
    that is JSON is read as JSON: numbers, lists, tables; any other is a string)."""
    for variable, text in os.environ.items():
        found = PROVIDER_ENV.fullmatch(variable)
        if found is None:
            continue
        name, key = found.group(1).lower(), found.group(2).lower()
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        tables.setdefault(name, {})[key] = value
    return tables


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
    elif error["type"] == "missing":
        message = MISSING.get(top, "missing: give it a value (see the README's configuration)")
    return f"setting `{name}`{where}: {message}"
