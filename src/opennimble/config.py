"""One Settings object for the whole installation.

Values come, highest priority first, from command-line flags, ``OPENNIMBLE_*`` environment
variables, a TOML file named by ``OPENNIMBLE_CONFIG`` (or ``--config``), and the defaults below.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from typing import Any

import pydantic
import pydantic_settings


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
    xvnc: str = "Xvnc"
    desktop_geometry: str = pydantic.Field(default="1280x800", pattern=r"^\d+x\d+$")
    desktop_ready_timeout: float = pydantic.Field(default=60.0, gt=0)
    reconcile_interval: float = pydantic.Field(default=1.0, gt=0)
    max_concurrent_provisions: int = pydantic.Field(default=8, ge=1)
    # desktops this host runs at most at once (the local provider's capacity)
    max_desktops: int = pydantic.Field(default=16, ge=1)
    page_size: int = pydantic.Field(default=100, ge=1, le=100)
    log_level: str = "info"

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
    def key_file(self) -> pathlib.Path:
        return self.data_dir / "secret.key"

    @property
    def runtime_dir(self) -> pathlib.Path:
        return self.data_dir / "desktops"


def load(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``overrides`` are flags given on the command line (None = unset)."""
    values: dict[str, Any] = {}
    path = config_file or os.environ.get("OPENNIMBLE_CONFIG")
    if path:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    env_set = {name for name in Settings.model_fields if f"OPENNIMBLE_{name.upper()}" in os.environ}
    values = {k: v for k, v in values.items() if k not in env_set}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
